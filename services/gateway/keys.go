package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/sessionguard/revoke/internal/loop"
	"github.com/sessionguard/revoke/internal/tokens"
)

// KeySource keeps the issuer's JWKS: fetched at start, refreshed
// periodically and when a token names an unknown kid (at most once per
// MinRefresh), and kept as it is while the JWKS endpoint is down.
type KeySource struct {
	url        string
	client     *http.Client
	minRefresh time.Duration
	holder     tokens.Holder
	log        *slog.Logger

	mu        sync.Mutex // serialises fetches
	lastFetch time.Time
	metrics   *Metrics // nil: not counted
}

// NewKeySource returns a key source for url; call Fetch before use.
func NewKeySource(url string, client *http.Client, minRefresh time.Duration, log *slog.Logger) *KeySource {
	return &KeySource{url: url, client: client, minRefresh: minRefresh, log: log}
}

// Current is the key set in force (nil before the first successful fetch).
func (k *KeySource) Current() *tokens.KeySet { return k.holder.Load() }

// Fetch downloads the JWKS and installs it. On error the previous set stays.
func (k *KeySource) Fetch(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.fetchLocked(ctx)
}

func (k *KeySource) fetchLocked(ctx context.Context) (err error) {
	k.lastFetch = time.Now()
	if m := k.metrics; m != nil {
		defer func() {
			if err != nil {
				m.jwksFailed.Inc()
				return
			}
			m.jwksOK.Inc()
			m.jwksLastSuccess.Set(float64(time.Now().UnixMilli()) / 1000)
		}()
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("jwks: %s answered %d", k.url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	keys, err := tokens.ParseJWKS(body)
	if err != nil {
		return err
	}
	ks, err := tokens.NewKeySet(keys)
	if err != nil {
		return err
	}
	k.holder.Store(ks)
	return nil
}

// RefreshForUnknownKid fetches the JWKS again unless that happened less
// than MinRefresh ago; concurrent callers share one fetch. It reports
// whether the key set may have changed.
func (k *KeySource) RefreshForUnknownKid(ctx context.Context) bool {
	before := k.Current()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.Current() != before { // another caller just refreshed
		return true
	}
	if time.Since(k.lastFetch) < k.minRefresh {
		return false
	}
	if err := k.fetchLocked(ctx); err != nil {
		k.log.WarnContext(ctx, "jwks refresh failed; keeping the previous keys", "error", err.Error())
		return false
	}
	return true
}

// Run refreshes the keys every interval until ctx ends.
func (k *KeySource) Run(ctx context.Context, interval time.Duration) {
	loop.Every(ctx, interval, func(ctx context.Context) {
		if err := k.Fetch(ctx); err != nil && ctx.Err() == nil {
			k.log.WarnContext(ctx, "jwks refresh failed; keeping the previous keys", "error", err.Error())
		}
	})
}
