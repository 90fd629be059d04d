package gateway

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// TestTokensEnterTheCacheOnTheirSecondUse: the doorkeeper keeps tokens used
// once out of the cache, and a cached token never outlives its validity.
func TestTokensEnterTheCacheOnTheirSecondUse(t *testing.T) {
	t.Parallel()
	is := newIssuer(t)
	keys := NewKeySource(is.jwks.URL, http.DefaultClient, time.Second, testLog())
	if err := keys.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(keys, testIssuer, testAudience, 5*time.Second, 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	tok := is.sign(t, newGrant())
	now := time.Now()
	if _, err := v.Verify(context.Background(), tok, now); err != nil {
		t.Fatal(err)
	}
	v.cache.Wait()
	if _, ok := v.cache.Get(tok); ok {
		t.Fatal("a token used once is in the cache")
	}
	if _, err := v.Verify(context.Background(), tok, now); err != nil {
		t.Fatal(err)
	}
	v.cache.Wait()
	id, ok := v.cache.Get(tok)
	if !ok || id.raw != tok {
		t.Fatal("a token used twice is not in the cache")
	}
	// the cached entry is refused once the token (plus leeway) has expired
	if _, err := v.Verify(context.Background(), tok, now.Add(5*time.Minute+6*time.Second)); err == nil {
		t.Fatal("an expired token was accepted from the cache")
	}
}
