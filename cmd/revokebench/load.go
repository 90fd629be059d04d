package main

import (
	"context"
	"io"
	"math"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// parallel runs f(0..n-1) on width goroutines and returns the first error.
func parallel(ctx context.Context, n, width int, f func(i int) error) error {
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for w := 0; w < width; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// hammer sends requests from conc closed-loop clients for d and returns
// requests per second and how many answers were not want(status).
func hammer(ctx context.Context, client *http.Client, conc int, d time.Duration, req func(i int) *http.Request, want func(i, status int) bool) (float64, int64) {
	var n, bad atomic.Int64
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for c := 0; c < conc; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; time.Now().Before(stop) && ctx.Err() == nil; i += conc {
				r := req(i)
				resp, err := client.Do(r.WithContext(ctx))
				if err != nil {
					bad.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				n.Add(1)
				if !want(i, resp.StatusCode) {
					bad.Add(1)
				}
			}
		}()
	}
	start := time.Now()
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds(), bad.Load()
}

// stats summarises latencies in milliseconds.
type stats struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

func summarise(ms []float64) stats {
	if len(ms) == 0 {
		return stats{}
	}
	s := append([]float64(nil), ms...)
	sort.Float64s(s)
	q := func(p float64) float64 { return round(s[int(math.Min(float64(len(s)-1), p*float64(len(s))))]) }
	return stats{N: len(s), P50: q(0.5), P90: q(0.9), P99: q(0.99), Max: round(s[len(s)-1])}
}

func round(x float64) float64 { return math.Round(x*1000) / 1000 }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
