package loop

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// TestRestartRunsAgainUntilCancelled: a job that keeps failing is run again
// after growing pauses, and Restart returns once ctx ends.
func TestRestartRunsAgainUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var runs atomic.Int32
	var starts []time.Time
	done := make(chan struct{})
	go func() {
		defer close(done)
		Restart(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), "job", 10*time.Millisecond, 40*time.Millisecond, func(context.Context) error {
			starts = append(starts, time.Now())
			if runs.Add(1) == 5 {
				cancel()
			}
			return errors.New("broke")
		})
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Restart did not return after cancel")
	}
	if runs.Load() != 5 {
		t.Fatalf("%d runs, want 5", runs.Load())
	}
	// pauses of 10, 20, 40 and 40 ms: the third and fourth are longer than the first
	if first, third := starts[1].Sub(starts[0]), starts[3].Sub(starts[2]); third < 30*time.Millisecond || first >= third {
		t.Fatalf("pauses %v then %v: want them to grow to the maximum", first, third)
	}
}
