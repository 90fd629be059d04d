package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/sessionguard/revoke/internal/postgres"
	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/sessiond"
)

type migrateCmd struct{}

func (migrateCmd) Run(e *env) error {
	pool, err := e.db(true)
	if err != nil {
		return err
	}
	n, err := postgres.MigrateEach(e.ctx, pool, func(a postgres.Applied) {
		fmt.Fprintf(e.stdout, "applied %s (%s)\n", a.File, a.Duration.Round(time.Millisecond))
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "applied %d migration(s); schema is current\n", n)
	return nil
}

type keysCmd struct {
	Rotate keysRotateCmd `cmd:"" help:"Add a new signing key; the old ones stay in the JWKS until their tokens expire."`
}

type keysRotateCmd struct{}

func (keysRotateCmd) Run(e *env) error {
	kek, err := sessions.ParseKEK(e.getenv("KEY_ENCRYPTION_KEY"))
	if err != nil {
		return err
	}
	cfg, err := sessiond.ServiceConfigFromEnv(e.getenv)
	if err != nil {
		return err
	}
	pool, err := e.db(false)
	if err != nil {
		return err
	}
	ks, err := sessions.NewKeyStore(pool, kek, sessions.KeyRetention(cfg), e.log)
	if err != nil {
		return err
	}
	kid, err := ks.Rotate(e.ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "new signing key %s; replicas pick it up within 30 s\n", kid)
	return nil
}

type orgCmd struct {
	Create orgCreateCmd `cmd:"" help:"Create an organisation; prints its id."`
	List   orgListCmd   `cmd:"" help:"List the organisations, with their users and active sessions."`
}

type orgCreateCmd struct {
	Name string `arg:"" help:"The organisation's name (unique, whatever its case)."`
}

func (c orgCreateCmd) Run(e *env) error {
	svc, err := e.service()
	if err != nil {
		return err
	}
	o, err := svc.CreateOrg(e.ctx, sessions.SystemPrincipal, c.Name, sessions.ClientMeta{})
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, o.ID)
	return nil
}

type orgListCmd struct{}

func (orgListCmd) Run(e *env) error {
	svc, err := e.service()
	if err != nil {
		return err
	}
	orgs, err := svc.OrgDirectory(e.ctx, sessions.SystemPrincipal)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tUSERS\tACTIVE SESSIONS\tCREATED")
	for _, o := range orgs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", o.ID, o.Name, o.Users, o.ActiveSessions, o.CreatedAt.Format(time.RFC3339))
	}
	return tw.Flush()
}

type userCmd struct {
	Create  userCreateCmd  `cmd:"" help:"Create a user; prints its id. The password is asked for (or read from stdin with --password-stdin)."`
	List    userListCmd    `cmd:"" help:"List users: every user, or an org's, found by any part of the email."`
	Enable  userEnableCmd  `cmd:"" help:"Let a disabled user sign in again."`
	Disable userDisableCmd `cmd:"" help:"Disable a user: every session and token of it is revoked, and no sign-in works until enabled."`
	Unlock  userUnlockCmd  `cmd:"" help:"Clear a user's sign-in lockout (the account's failed sign-ins)."`
}

type userCreateCmd struct {
	Org           string `required:"" help:"Organisation id."`
	Email         string `required:"" help:"Email."`
	Role          string `default:"user" enum:"user,org_admin,global_admin" help:"user, org_admin or global_admin."`
	Password      string `help:"The password (visible to other users of this machine: prefer the prompt or --password-stdin)."`
	PasswordStdin bool   `name:"password-stdin" help:"Read the password from the first line of stdin."`
}

func (c userCreateCmd) Run(e *env) error {
	password, err := c.password(e)
	if err != nil {
		return err
	}
	svc, err := e.service()
	if err != nil {
		return err
	}
	u, err := svc.CreateUser(e.ctx, sessions.SystemPrincipal, sessions.NewUser{OrgID: c.Org, Email: c.Email, Password: password, Role: c.Role}, sessions.ClientMeta{})
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, u.ID)
	return nil
}

// password is the new user's password: from the flag, stdin, or a prompt
// (twice, not echoed) when stdin is a terminal.
func (c userCreateCmd) password(e *env) (string, error) {
	switch {
	case c.Password != "" && c.PasswordStdin:
		return "", fmt.Errorf("%w: give --password or --password-stdin, not both", errUsage)
	case c.Password != "":
		return c.Password, nil
	}
	if f, ok := e.stdin.(*os.File); ok && !c.PasswordStdin && term.IsTerminal(int(f.Fd())) {
		ask := func(prompt string) (string, error) {
			fmt.Fprint(e.stderr, prompt)
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(e.stderr)
			return string(b), err
		}
		p, err := ask("Password for " + c.Email + ": ")
		if err != nil {
			return "", err
		}
		again, err := ask("Again: ")
		if err != nil {
			return "", err
		}
		if p != again {
			return "", errors.New("the two passwords differ")
		}
		return p, nil
	}
	line, err := bufio.NewReader(e.stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", errors.New("no password: type it at the prompt, or give it on stdin with --password-stdin")
	}
	return strings.TrimRight(line, "\r\n"), nil
}

type userListCmd struct {
	Org      string `help:"Only this organisation's users."`
	Email    string `help:"Only users whose email holds this (any case)."`
	Disabled *bool  `help:"Only disabled users (--disabled) or enabled ones (--disabled=false)."`
	Limit    int    `default:"50" help:"Users per page (at most 500)."`
	All      bool   `help:"Every page, not only the first."`
}

func (c userListCmd) Run(e *env) error {
	svc, err := e.service()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tEMAIL\tROLE\tSTATUS\tLAST SIGN-IN\tACTIVE SESSIONS")
	q := sessions.UserQuery{OrgID: c.Org, Email: c.Email, Disabled: c.Disabled, Limit: c.Limit}
	for {
		page, err := svc.ListUsers(e.ctx, sessions.SystemPrincipal, q)
		if err != nil {
			return err
		}
		for _, u := range page.Users {
			status, last := "active", "never"
			if u.Disabled {
				status = "disabled"
			}
			if u.LastLoginAt != nil {
				last = u.LastLoginAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", u.ID, u.Email, u.Role, status, last, u.ActiveSessions)
		}
		if page.NextCursor == "" || !c.All {
			if page.NextCursor != "" {
				defer fmt.Fprintln(e.stderr, "more users follow: --all lists every page")
			}
			return tw.Flush()
		}
		q.Cursor = page.NextCursor
	}
}

type userEnableCmd struct {
	ID string `arg:"" help:"User id."`
}

func (c userEnableCmd) Run(e *env) error { return setDisabled(e, c.ID, false) }

type userDisableCmd struct {
	ID string `arg:"" help:"User id."`
}

func (c userDisableCmd) Run(e *env) error { return setDisabled(e, c.ID, true) }

func setDisabled(e *env, id string, disable bool) error {
	svc, err := e.service()
	if err != nil {
		return err
	}
	u, receipt, err := svc.SetUserDisabled(e.ctx, sessions.SystemPrincipal, id, disable, sessions.ClientMeta{})
	if err != nil {
		return err
	}
	if disable {
		fmt.Fprintf(e.stdout, "%s is disabled; every session of it is revoked (revocation %s)\n", u.Email, receipt)
		return nil
	}
	fmt.Fprintf(e.stdout, "%s is enabled and can sign in again\n", u.Email)
	return nil
}

type userUnlockCmd struct {
	ID string `arg:"" help:"User id."`
}

func (c userUnlockCmd) Run(e *env) error {
	svc, err := e.service()
	if err != nil {
		return err
	}
	n, err := svc.ClearLoginFailures(e.ctx, sessions.SystemPrincipal, c.ID, sessions.ClientMeta{})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "cleared %d failed sign-in(s); the user can sign in again now\n", n)
	return nil
}

type revokeCmd struct {
	Org              string     `required:"" help:"Organisation id."`
	Role             string     `help:"Only users of this role: user, org_admin or global_admin."`
	DeviceType       string     `name:"device-type" help:"Only sessions of this device type."`
	User             string     `help:"Only this user's sessions."`
	SignedInBefore   *time.Time `name:"signed-in-before" help:"Only sessions signed in before this RFC 3339 time."`
	LastActiveBefore *time.Time `name:"last-active-before" help:"Only sessions last active before this RFC 3339 time."`
	Reason           string     `help:"Why, for the audit log."`
	DryRun           bool       `name:"dry-run" help:"Count what matches and write nothing."`
}

func (c revokeCmd) Run(e *env) error {
	svc, err := e.service()
	if err != nil {
		return err
	}
	f := sessions.BulkFilter{OrgID: c.Org, Role: c.Role, DeviceType: c.DeviceType, UserID: c.User,
		SignedInBefore: c.SignedInBefore, LastActiveBefore: c.LastActiveBefore, ReasonText: c.Reason, DryRun: c.DryRun}
	res, err := svc.RevokeByFilter(e.ctx, sessions.SystemPrincipal, f, sessions.ClientMeta{})
	if err != nil {
		return err
	}
	if c.DryRun {
		fmt.Fprintf(e.stdout, "%d session(s) of %d user(s) match; nothing written\n", res.MatchedSessions, res.MatchedUsers)
		return nil
	}
	fmt.Fprintf(e.stdout, "revoked %d session(s) of %d user(s); revocation %s\n", res.RevokedSessions, res.RevokedUsers, res.RevocationID)
	return nil
}

type republishCmd struct {
	Signals time.Duration `help:"Also queue again the Shared Signals signals sent within this long (e.g. 24h, at most OUTBOX_RETENTION), for a SIGNALS stream that was lost with its cluster."`
}

func (c republishCmd) Run(e *env) error {
	svc, err := e.service()
	if err != nil {
		return err
	}
	n, err := svc.Republish(e.ctx, func(queued int) { fmt.Fprintf(e.stderr, "queued %d so far…\n", queued) })
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "queued %d live revocation(s) for publishing\n", n)
	if c.Signals > 0 {
		m, err := svc.RequeueSignals(e.ctx, c.Signals)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "queued %d Shared Signals signal(s) of the last %s again\n", m, c.Signals)
	}
	return nil
}
