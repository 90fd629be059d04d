// Package pgserver runs a private PostgreSQL server (initdb + pg_ctl) in a
// directory of its own, listening only on a Unix socket inside that directory,
// so it never collides with a system PostgreSQL on port 5432. The dev stack
// and the test helpers use it when DATABASE_URL is unset.
package pgserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"
)

// ErrNoBinaries is returned when the PostgreSQL server binaries are missing.
var ErrNoBinaries = errors.New("PostgreSQL server binaries (initdb, pg_ctl) not found: install them with `apt-get install postgresql` or set DATABASE_URL")

// Options tune the private server.
type Options struct {
	// NoSync turns fsync off: for tests only, never for data you keep.
	NoSync bool
	// Settings are extra `-c name=value` server settings.
	Settings map[string]string
}

// Server is a running private PostgreSQL server.
type Server struct {
	dir    string
	binDir string
	cred   *syscall.Credential
}

// FindBinDir returns the directory that holds initdb and pg_ctl: the one on
// PATH, else the newest /usr/lib/postgresql/*/bin. It returns ErrNoBinaries
// when there is none.
func FindBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir, nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(matches, func(i, j int) bool { return versionOf(matches[i]) > versionOf(matches[j]) })
	for _, m := range matches {
		dir := filepath.Dir(m)
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir, nil
		}
	}
	return "", ErrNoBinaries
}

func versionOf(initdbPath string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdbPath))))
	return v
}

// Start initialises dir (when it holds no cluster yet) and starts the server.
// When the process runs as root, the server runs as the "postgres" user (or
// "nobody"), because PostgreSQL refuses to run as root.
func Start(ctx context.Context, dir string, opts Options) (*Server, error) {
	binDir, err := FindBinDir()
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	// The socket path must fit in sun_path (107 bytes).
	if n := len(dir) + len("/.s.PGSQL.5432"); n > 100 {
		return nil, fmt.Errorf("pgserver: directory path %q too long for a Unix socket", dir)
	}
	s := &Server{dir: dir, binDir: binDir}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pgserver: %w", err)
	}
	if os.Geteuid() == 0 {
		cred, err := unprivileged()
		if err != nil {
			return nil, err
		}
		s.cred = cred
		if err := reachable(filepath.Dir(dir)); err != nil {
			return nil, err
		}
		if err := chownTree(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("pgserver: %w", err)
		}
	}
	data := s.dataDir()
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		args := []string{"-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale"}
		if opts.NoSync {
			args = append(args, "--no-sync")
		}
		if err := s.run(ctx, "initdb", args...); err != nil {
			return nil, err
		}
	}
	settings := map[string]string{
		"listen_addresses":        "''",
		"unix_socket_directories": "'" + dir + "'",
		"max_connections":         "300",
		"shared_buffers":          "128MB",
	}
	if opts.NoSync {
		settings["fsync"] = "off"
		settings["synchronous_commit"] = "off"
		settings["full_page_writes"] = "off"
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var o bytes.Buffer
	for _, k := range keys {
		fmt.Fprintf(&o, "-c %s=%s ", k, settings[k])
	}
	if err := s.run(ctx, "pg_ctl", "-D", data, "-l", filepath.Join(dir, "postgres.log"), "-w", "-t", "60", "-o", o.String(), "start"); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) dataDir() string { return filepath.Join(s.dir, "data") }

// URL returns a connection string for database db over the server's socket.
func (s *Server) URL(db string) string {
	q := url.Values{"host": {s.dir}, "sslmode": {"disable"}}
	return "postgres://postgres@/" + url.PathEscape(db) + "?" + q.Encode()
}

// Dir is the server's directory (data, socket and log).
func (s *Server) Dir() string { return s.dir }

// Stop shuts the server down (fast mode: open transactions are rolled back).
func (s *Server) Stop(ctx context.Context) error {
	return s.run(ctx, "pg_ctl", "-D", s.dataDir(), "-m", "fast", "-w", "stop")
}

func (s *Server) run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(s.binDir, name), args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	// A process group of its own, so a Ctrl-C in the terminal does not kill
	// the server before the owner stops it cleanly.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: s.cred}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgserver: %s: %w: %s", name, err, bytes.TrimSpace(out))
	}
	return nil
}

func unprivileged() (*syscall.Credential, error) {
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("pgserver: running as root and found neither a postgres nor a nobody user to run PostgreSQL as")
}

// reachable checks that every directory from / down to dir lets others
// pass (o+x): PostgreSQL runs as another user and must reach its directory.
func reachable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("pgserver: %w", err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("pgserver: PostgreSQL runs as an unprivileged user when started by root, and cannot enter %s (mode %v): use a directory that others may traverse", d, fi.Mode().Perm())
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

func chownTree(dir string, uid, gid int) error {
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// WaitReady is a helper for callers that restart the server: it polls until
// connect succeeds or ctx ends.
func WaitReady(ctx context.Context, ping func(context.Context) error) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if err := ping(ctx); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
