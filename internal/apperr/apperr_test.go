package apperr

import (
	"errors"
	"fmt"
	"testing"
)

func TestCodesAndSafeMessages(t *testing.T) {
	internal := errors.New("pq: password authentication failed for user upanel")
	wrapped := fmt.Errorf("loading: %w", Wrap(internal, NotFound, "server not found"))
	if CodeOf(wrapped) != NotFound || !Is(wrapped, NotFound) || MessageOf(wrapped) != "server not found" {
		t.Fatalf("wrapped: %s %q", CodeOf(wrapped), MessageOf(wrapped))
	}
	if !errors.Is(wrapped, internal) {
		t.Fatal("the cause is lost")
	}
	if CodeOf(internal) != Internal || MessageOf(internal) != "internal error" {
		t.Fatalf("a plain error must be internal and never shown: %s %q", CodeOf(internal), MessageOf(internal))
	}
	if MessageOf(Wrap(internal, Internal, "db down")) != "internal error" {
		t.Fatal("an internal error's message must not reach users")
	}
}
