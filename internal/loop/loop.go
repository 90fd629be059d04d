// Package loop runs background work: periodic jobs, and long-running ones
// that start again when they stop.
package loop

import (
	"context"
	"log/slog"
	"time"
)

// Every calls f every interval until ctx ends. f runs on the caller's
// goroutine, so one call never overlaps the next.
func Every(ctx context.Context, interval time.Duration, f func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f(ctx)
		}
	}
}

// Restart runs f until ctx ends, and runs it again whenever it returns
// before then: a consumer whose subscription broke, a LISTEN connection
// that was lost. Each restart is logged at warn with what f returned. The
// pause before a restart starts at minWait and doubles, up to maxWait, while
// f keeps stopping within maxWait of its start; after a longer run it is
// minWait again.
func Restart(ctx context.Context, log *slog.Logger, what string, minWait, maxWait time.Duration, f func(context.Context) error) {
	wait := minWait
	for ctx.Err() == nil {
		started := time.Now()
		err := f(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > maxWait {
			wait = minWait
		}
		reason := "it stopped"
		if err != nil {
			reason = err.Error()
		}
		log.WarnContext(ctx, what+" restarting", "error", reason, "retry_in", wait.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, maxWait)
	}
}
