package ssf

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/sessionguard/revoke/services/sessions"
)

// Poll delivery (RFC 8936): a poll stream's SETs wait in PostgreSQL, in
// the order they were made, until the receiver acknowledges them (ack) or
// reports them invalid (setErrs); each poll returns the oldest waiting.

// PollRequest is an RFC 8936 section 2.2 request.
type PollRequest struct {
	MaxEvents         *int                 `json:"maxEvents"`
	ReturnImmediately bool                 `json:"returnImmediately"`
	Ack               []string             `json:"ack"`
	SetErrs           map[string]pushError `json:"setErrs"`
}

// PollResponse is an RFC 8936 section 2.3 answer.
type PollResponse struct {
	Sets          OrderedSets `json:"sets"`
	MoreAvailable bool        `json:"moreAvailable"`
}

// OrderedSets is the sets member of a poll's answer: jti to SET, written
// in the order the SETs were made (a JSON object's members have an order
// on the wire, and a receiver that reads them in it applies them in it).
type OrderedSets []PolledSET

// PolledSET is one SET of a poll's answer.
type PolledSET struct{ JTI, JWT string }

// MarshalJSON writes the sets as one object, in order.
func (o OrderedSets) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, s := range o {
		if i > 0 {
			b = append(b, ',')
		}
		k, err := json.Marshal(s.JTI)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(s.JWT)
		if err != nil {
			return nil, err
		}
		b = append(append(append(b, k...), ':'), v...)
	}
	return append(b, '}'), nil
}

// maxPoll bounds what one poll returns when it names no maxEvents.
const maxPoll = 1000

// pollTick is how often a long poll looks for SETs that another replica's
// lanes queued.
const pollTick = 200 * time.Millisecond

// Poll acknowledges what req acknowledges and returns the SETs that wait
// on one of c's poll streams: at once when some wait or req says
// returnImmediately, else when one comes or after Config.PollWait. A paused
// or disabled stream returns none. ErrInvalid for a bad request or a push
// stream, errNoStream.
func (t *Transmitter) Poll(ctx context.Context, c sessions.Client, id string, req PollRequest) (PollResponse, error) {
	limit := maxPoll
	if req.MaxEvents != nil {
		if *req.MaxEvents < 0 {
			return PollResponse{}, sessions.Invalid("maxEvents must not be negative")
		}
		limit = min(*req.MaxEvents, maxPoll)
	}
	if len(req.Ack)+len(req.SetErrs) > 10000 {
		return PollResponse{}, sessions.Invalid("at most 10000 SETs acknowledged in one poll")
	}
	st, err := t.stream(ctx, t.pool, c, id, false)
	if err != nil {
		return PollResponse{}, err
	}
	if st.Delivery.Method != MethodPoll {
		return PollResponse{}, sessions.Invalid("the stream delivers by push (%s), not poll", MethodPush)
	}
	if err := t.acknowledge(ctx, st, req); err != nil {
		return PollResponse{}, err
	}
	out := PollResponse{Sets: OrderedSets{}}
	if limit == 0 {
		return out, nil
	}
	if st.Status != StatusEnabled {
		// Nothing is transmitted while paused or disabled; a long poll
		// still waits, so that a receiver's loop does not spin.
		if !req.ReturnImmediately {
			select {
			case <-ctx.Done():
			case <-time.After(t.cfg.PollWait):
			}
		}
		return out, nil
	}
	deadline := time.Now().Add(t.cfg.PollWait)
	for {
		wake := t.pollSignal(id)
		rows, err := t.pool.Query(ctx, `SELECT jti, set_jwt FROM ssf_poll_sets WHERE stream_id = $1 ORDER BY seq LIMIT $2`, id, limit+1)
		if err != nil {
			return PollResponse{}, fmt.Errorf("%w: poll: %w", sessions.ErrUnavailable, err)
		}
		n := 0
		for rows.Next() {
			var jti, jwt string
			if err := rows.Scan(&jti, &jwt); err != nil {
				rows.Close()
				return PollResponse{}, fmt.Errorf("%w: poll: %w", sessions.ErrUnavailable, err)
			}
			if n++; n > limit {
				out.MoreAvailable = true
				break
			}
			out.Sets = append(out.Sets, PolledSET{JTI: jti, JWT: jwt})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return PollResponse{}, fmt.Errorf("%w: poll: %w", sessions.ErrUnavailable, err)
		}
		if len(out.Sets) > 0 || req.ReturnImmediately || !time.Now().Before(deadline) {
			return out, nil
		}
		timer := time.NewTimer(min(pollTick, time.Until(deadline)))
		select {
		case <-ctx.Done():
			timer.Stop()
			return out, nil
		case <-wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// acknowledge releases the SETs a poll acknowledges or reports invalid
// (RFC 8936 section 2.4): both leave the queue; errors are counted and
// recorded as the stream's last error.
func (t *Transmitter) acknowledge(ctx context.Context, st *Stream, req PollRequest) error {
	if len(req.Ack) == 0 && len(req.SetErrs) == 0 {
		return nil
	}
	jtis := append([]string{}, req.Ack...)
	for jti := range req.SetErrs {
		jtis = append(jtis, jti)
	}
	tag, err := t.pool.Exec(ctx, `DELETE FROM ssf_poll_sets WHERE stream_id = $1 AND jti = ANY($2)`, st.ID, jtis)
	if err != nil {
		return fmt.Errorf("%w: poll acknowledgement: %w", sessions.ErrUnavailable, err)
	}
	acked := int(tag.RowsAffected())
	now := time.Now().UTC()
	if len(req.SetErrs) > 0 {
		t.metrics.failed.WithLabelValues(st.ID, "rejected").Add(float64(len(req.SetErrs)))
		var last string
		for jti, e := range req.SetErrs {
			last = fmt.Sprintf("the receiver rejected SET %s: %s: %s", jti, e.Err, e.Description)
			t.log.WarnContext(ctx, "shared signals SET rejected by its receiver", "stream_id", st.ID, "jti", jti, "err", e.Err, "description", e.Description)
		}
		if len(last) > 500 {
			last = last[:500]
		}
		if _, err := t.pool.Exec(ctx, `UPDATE ssf_streams SET last_error = $2, last_error_at = $3 WHERE id = $1`, st.ID, last, now); err != nil {
			return fmt.Errorf("%w: poll acknowledgement: %w", sessions.ErrUnavailable, err)
		}
		acked -= min(acked, len(req.SetErrs))
	}
	if acked > 0 {
		t.metrics.delivered.WithLabelValues(st.ID).Add(float64(acked))
		if _, err := t.pool.Exec(ctx, `UPDATE ssf_streams SET last_delivery_at = $2 WHERE id = $1`, st.ID, now); err != nil {
			return fmt.Errorf("%w: poll acknowledgement: %w", sessions.ErrUnavailable, err)
		}
	}
	return nil
}
