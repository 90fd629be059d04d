package sessions

import (
	"strings"
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

// deviceTypeFromUserAgent guesses the device type of a User-Agent.
func deviceTypeFromUserAgent(ua string) string {
	l := strings.ToLower(ua)
	switch {
	case l == "":
		return "other"
	case strings.Contains(l, "electron"):
		return "desktop"
	case strings.Contains(l, "iphone") || strings.Contains(l, "ipad") || strings.Contains(l, "ipod") ||
		strings.Contains(l, "ios") || strings.Contains(l, "cfnetwork"):
		return "ios"
	case strings.Contains(l, "android") || strings.Contains(l, "okhttp"):
		return "android"
	case strings.HasPrefix(l, "mozilla/") || strings.HasPrefix(l, "opera/"):
		return "web"
	}
	return "other"
}

// ClientLabel names a User-Agent the way a person would, e.g. "Chrome on
// Windows" or "curl". It is a plain substring match, not a full parser: the
// full string is shown on hover.
func ClientLabel(ua string) string {
	if strings.TrimSpace(ua) == "" {
		return "Unknown client"
	}
	l := strings.ToLower(ua)
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(l, s) {
				return true
			}
		}
		return false
	}
	var client string
	switch {
	case has("edg/", "edga/", "edgios/"):
		client = "Edge"
	case has("opr/", "opera"):
		client = "Opera"
	case has("samsungbrowser/"):
		client = "Samsung Internet"
	case has("firefox/", "fxios/"):
		client = "Firefox"
	case has("electron/"):
		client = "Desktop app"
	case has("chrome/", "crios/", "chromium/"):
		client = "Chrome"
	case has("safari/") && has("version/", "mobile/"):
		client = "Safari"
	case strings.HasPrefix(l, "curl/"):
		client = "curl"
	case has("okhttp"):
		client = "Android app"
	case has("cfnetwork"):
		client = "iOS app"
	default:
		client = ua
		if i := strings.IndexAny(client, "/ ("); i > 0 {
			client = client[:i]
		}
		client = truncate(client, 32)
	}
	var os string
	switch {
	case has("iphone", "ipod"):
		os = "iOS"
	case has("ipad"):
		os = "iPadOS"
	case has("android"):
		os = "Android"
	case has("windows"):
		os = "Windows"
	case has("cros"):
		os = "ChromeOS"
	case has("macintosh", "mac os x"):
		os = "macOS"
	case has("linux"):
		os = "Linux"
	}
	if os == "" || client == os+" app" {
		return client
	}
	return client + " on " + os
}
