package gateway

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/sessionguard/revoke/internal/httpx"
)

// Clock is a wall clock that runs at an offset from the machine's, which a
// fault test may step while the gateway runs, as NTP steps a real clock
// (DEBUG_CLOCK_OFFSET, and PUT /debug/clock on DEBUG_ADDR). A step within
// TOKEN_LEEWAY must change nothing the gateway decides: tokens are checked
// by the wall clock with that leeway, and staleness is measured on the
// monotonic clock, which no step moves.
type Clock struct{ offset atomic.Int64 }

// NewClock returns a clock offset by d.
func NewClock(d time.Duration) *Clock {
	c := &Clock{}
	c.Set(d)
	return c
}

// Now is the machine's time plus the offset.
func (c *Clock) Now() time.Time { return time.Now().Add(c.Offset()) }

// Offset is the clock's offset from the machine's.
func (c *Clock) Offset() time.Duration { return time.Duration(c.offset.Load()) }

// Set steps the clock to an offset of d.
func (c *Clock) Set(d time.Duration) { c.offset.Store(int64(d)) }

// ServeHTTP answers GET with the offset and PUT ?offset=DURATION by
// stepping the clock to it.
func (c *Clock) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
	case http.MethodPut:
		d, err := time.ParseDuration(r.URL.Query().Get("offset"))
		if err != nil {
			httpx.WriteProblem(w, http.StatusBadRequest, "invalid-request", fmt.Sprintf("offset: %q is not a duration such as 2.5s or -10s", r.URL.Query().Get("offset")))
			return
		}
		c.Set(d)
	default:
		w.Header().Set("Allow", "GET, PUT")
		httpx.WriteProblem(w, http.StatusMethodNotAllowed, "method-not-allowed", r.Method+" is not allowed here")
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]string{"offset": c.Offset().String()})
}
