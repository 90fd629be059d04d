// Package loop runs periodic background work.
package loop

import (
	"context"
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
