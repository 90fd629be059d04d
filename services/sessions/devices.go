package sessions

import (
	"context"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/medama-io/go-useragent"
)

// DeviceType is a kind of device a session signs in from, with the name a
// person reads.
type DeviceType struct {
	Name  string // as the API and the database have it
	Label string
}

// DeviceTypes is the one list of device types: what login accepts, what the
// listings filter by, what the portal offers and shows. The schema's CHECK
// on sessions.device_type names the same (a test holds them together).
var DeviceTypes = []DeviceType{{"ios", "iOS"}, {"android", "Android"}, {"web", "Web"}, {"desktop", "Desktop"}, {"other", "Other"}}

// validDeviceType reports whether name is one of DeviceTypes.
func validDeviceType(name string) bool {
	for _, d := range DeviceTypes {
		if d.Name == name {
			return true
		}
	}
	return false
}

// DeviceLabel is the display name of a device type (the name itself when
// it is none of DeviceTypes).
func DeviceLabel(name string) string {
	for _, d := range DeviceTypes {
		if d.Name == name {
			return d.Label
		}
	}
	return name
}

// deviceTypeNames lists the names for messages: "ios, android, …".
func deviceTypeNames() string {
	names := make([]string, len(DeviceTypes))
	for i, d := range DeviceTypes {
		names[i] = d.Name
	}
	return strings.Join(names, ", ")
}

// The User-Agent is read in one place, here, by a maintained parser
// (github.com/medama-io/go-useragent: browsers, operating systems, device
// kinds); what it does not know (native apps' own User-Agents, HTTP
// libraries) falls back to the product token.

// uaParser is safe for concurrent use: it holds a read-only trie.
var uaParser = useragent.NewParser()

// clientOf is what a User-Agent says: the browser (or app) and the OS.
type clientOf struct {
	browser, os             string
	mobile, tablet, desktop bool
	app                     string // for what the parser does not know: "Android app", "iOS app", "Desktop app"
	product                 string // the first product token: "curl", "MyApp"
}

func parseUserAgent(ua string) clientOf {
	p := uaParser.Parse(ua)
	c := clientOf{browser: string(p.Browser()), os: osLabel(string(p.OS())), mobile: p.IsMobile(), tablet: p.IsTablet(), desktop: p.IsDesktop()}
	l := strings.ToLower(ua)
	switch {
	case strings.Contains(l, "electron/"):
		c.app, c.browser = "Desktop app", ""
	case strings.Contains(l, "okhttp"):
		c.app = "Android app"
	case strings.Contains(l, "cfnetwork"):
		c.app = "iOS app"
	}
	c.product = ua
	if i := strings.IndexAny(c.product, "/ ("); i > 0 {
		c.product = c.product[:i]
	}
	c.product = truncate(strings.TrimSpace(c.product), 32)
	return c
}

// osLabel spells an OS as its maker does.
func osLabel(os string) string {
	if os == "MacOS" {
		return "macOS"
	}
	return os
}

// deviceTypeFromUserAgent guesses the device type of a User-Agent.
func deviceTypeFromUserAgent(ua string) string {
	c := parseUserAgent(ua)
	switch {
	case c.app == "Desktop app":
		return "desktop"
	case c.os == "iOS" || c.os == "iPadOS" || c.app == "iOS app":
		return "ios"
	case c.os == "Android" || c.app == "Android app":
		return "android"
	case c.browser != "":
		return "web"
	}
	return "other"
}

// ClientLabel names a User-Agent the way a person would, e.g. "Chrome on
// Windows", "Android app" or "curl"; the full string is kept beside it.
func ClientLabel(ua string) string {
	if strings.TrimSpace(ua) == "" {
		return "Unknown client"
	}
	c := parseUserAgent(ua)
	client := c.browser
	switch {
	case c.app != "":
		return c.app
	case client == "":
		return c.product
	case c.os == "":
		return client
	}
	return client + " on " + c.os
}

// Bounds of what a client names its device with.
const (
	maxDeviceName = 100 // characters
	maxDeviceID   = 128 // bytes
)

// validDeviceName checks a device name (field names it in the error): at
// most maxDeviceName characters of storable text without control
// characters; empty is no name.
func validDeviceName(field, name string) error {
	if utf8.RuneCountInString(name) > maxDeviceName || !storable(name) || !printable(name) {
		return Invalid("%s must be text of at most %d characters, without control characters", field, maxDeviceName)
	}
	return nil
}

// printable reports whether s holds no control characters.
func printable(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return false
		}
	}
	return true
}

// RenameOwnSession names one of the caller's live sessions' device (PATCH
// /v1/me/sessions/{id}); an empty name clears it. ErrNotFound when id is
// not one of them.
func (s *Service) RenameOwnSession(ctx context.Context, p Principal, id, name string) (Session, error) {
	if !isUUID(id) {
		return Session{}, Invalid("session id must be a UUID")
	}
	name = strings.TrimSpace(name)
	if err := validDeviceName("device_name", name); err != nil {
		return Session{}, err
	}
	q := sessionFilter{sessionID: id, userID: p.UserID}.where("", s.now())
	sql := `UPDATE sessions SET device_name = ` + q.bind(nullable(name)) + ` WHERE ` + q.sql() + ` RETURNING ` + sessionColumns
	rows, err := s.pool.Query(ctx, sql, q.args...)
	if err != nil {
		return Session{}, fmt.Errorf("%w: rename session: %w", ErrUnavailable, err)
	}
	out, err := pgx.CollectRows(rows, scanSession)
	if err != nil {
		return Session{}, fmt.Errorf("%w: rename session: %w", ErrUnavailable, err)
	}
	if len(out) == 0 {
		return Session{}, fmt.Errorf("%w: no active session of yours has this id", ErrNotFound)
	}
	out[0].Current = out[0].ID == p.SessionID
	return out[0], nil
}
