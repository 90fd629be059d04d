package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessionguard/revoke/internal/postgres"
)

// finish ends a run: with the nemesis and the clients stopped and the
// system healthy again, every token the clients hold is asked about at
// every gateway once more, erased users try to sign in, and the facts the
// checker needs are read from PostgreSQL, all into the history.
func (k *soak) finish(ctx context.Context, clients []*client, erased []*user) error {
	for deadline := time.Now().Add(2 * time.Minute); !k.s.healthy(ctx); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("the system was not healthy two minutes after the last fault")
		}
	}
	pool, err := postgres.Connect(ctx, k.s.pgDB)
	if err != nil {
		return err
	}
	defer pool.Close()
	// The outbox drains (what the last fault held back goes out).
	var unsent int
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM outbox WHERE sent_at IS NULL").Scan(&unsent); err != nil {
			return err
		}
		if unsent == 0 || time.Now().After(deadline) {
			break
		}
	}
	now := time.Now()
	k.rec.add(Op{Kind: opFinal, Detail: "outbox_unsent", Start: now, End: now, N: unsent})
	// Every acknowledged erasure carried out: its audit row written.
	for _, u := range erased {
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			var n int
			if err := pool.QueryRow(ctx, "SELECT count(*) FROM audit_log WHERE action = 'user_erased' AND target_user_id = $1", u.id).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				break
			}
		}
	}
	// Past every bound, then every token at every gateway.
	time.Sleep(k.staleness + k.propagation)
	for _, c := range clients {
		toks := append([]string(nil), c.dead...)
		for _, s := range c.live {
			toks = append(toks, s.tokens...)
		}
		for _, tok := range toks {
			for _, g := range k.s.gateways {
				op := Op{Kind: opCheck, Client: c.id, Start: time.Now(), Target: g.name}
				op.Token, _ = claims(tok)
				a := k.call(ctx, g.base, "GET", "/v1/check", tok, nil)
				op.End, op.Status, op.Err = time.Now(), a.status, a.err
				k.rec.add(op)
			}
		}
	}
	for _, u := range erased {
		sd := k.s.sessiond[0]
		op := Op{Kind: opLogin, Start: time.Now(), Target: sd.name, User: u.id}
		a := k.call(ctx, sd.base, "POST", "/v1/auth/login", "", map[string]any{"email": u.email, "password": userPassword, "device": map[string]string{"type": "web", "name": "soak"}})
		op.End, op.Status, op.Err = time.Now(), a.status, a.err
		k.rec.add(op)
	}
	return k.facts(ctx, pool, erased)
}

// facts reads what the checker holds the history to at the end.
func (k *soak) facts(ctx context.Context, pool *pgxpool.Pool, erased []*user) error {
	lists := []struct{ name, sql string }{
		{"revoked_sessions", `SELECT id::text FROM sessions WHERE revoked_at IS NOT NULL`},
		{"audited_sessions", `SELECT DISTINCT session_id::text FROM audit_log WHERE session_id IS NOT NULL AND action IN ('session_revoked', 'refresh_reuse')`},
		{"audited_users", `SELECT DISTINCT target_user_id::text FROM audit_log WHERE target_user_id IS NOT NULL AND action = 'user_sessions_revoked'`},
		{"erased_users_audited", `SELECT DISTINCT target_user_id::text FROM audit_log WHERE target_user_id IS NOT NULL AND action = 'user_erased'`},
		// A live, unrotated, unexpired refresh token is its family's head.
		{"refresh_heads", `SELECT rt.session_id::text FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id
			WHERE rt.rotated_at IS NULL AND rt.expires_at > now() AND s.revoked_at IS NULL
			GROUP BY rt.session_id HAVING count(*) > 1`},
	}
	for _, l := range lists {
		rows, err := pool.Query(ctx, l.sql)
		if err != nil {
			return fmt.Errorf("%s: %w", l.name, err)
		}
		var ids []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		now := time.Now()
		k.rec.add(Op{Kind: opFinal, Detail: l.name, Start: now, End: now, List: ids, N: len(ids)})
	}
	for _, u := range erased {
		var left int
		err := pool.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL) +
			(SELECT count(*) FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id WHERE s.user_id = $1) +
			(SELECT count(*) FROM sessions WHERE user_id = $1 AND (ip IS NOT NULL OR user_agent IS NOT NULL OR device_name IS NOT NULL))`, u.id).Scan(&left)
		if err != nil {
			return err
		}
		now := time.Now()
		k.rec.add(Op{Kind: opFinal, Detail: "erased_user_left", Start: now, End: now, User: u.id, N: left})
	}
	return nil
}
