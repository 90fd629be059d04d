package main

import (
	"context"
	"net/http"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionguard/revoke/internal/barepath"
	"github.com/sessionguard/revoke/internal/postgres"
)

// The floor of the propagation scenario is internal/barepath, run as
// processes of this binary: "bare -mode api" and "bare -mode gateway".

// bareSchema is the bare API's table and stream, made by the load tool.
func bareSchema(ctx context.Context, e *benchEnv) error {
	nc, err := nats.Connect(e.natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	return barepath.Prepare(ctx, e.pool, js)
}

// bareAPI is the bare API on its own connections.
func bareAPI(ctx context.Context, databaseURL, natsURL string) (http.Handler, func(), error) {
	pool, err := postgres.Connect(ctx, databaseURL)
	if err != nil {
		return nil, nil, err
	}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		pool.Close()
		return nil, nil, err
	}
	return barepath.API(pool, js), func() { nc.Close(); pool.Close() }, nil
}

// bareGateway is a bare gateway that reports as name.
func bareGateway(ctx context.Context, natsURL, name string) (http.Handler, func(), error) {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return nil, nil, err
	}
	h, stop, err := barepath.Gateway(ctx, nc, name)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return h, func() { stop(); nc.Close() }, nil
}
