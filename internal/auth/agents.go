package auth

import (
	"context"
	"strings"
)

// AgentTokenPrefix starts every agent token, so it is never taken for an API
// token and a leaked one is recognisable.
const AgentTokenPrefix = "uat_"

// NewAgentToken makes a token for an agent and the hash the panel keeps.
func NewAgentToken() (raw, hash string) { return NewSecret(AgentTokenPrefix) }

// NewSecret makes a random 256-bit token with a recognisable prefix, and the
// hash it is kept as.
func NewSecret(prefix string) (raw, hash string) {
	raw = prefix + newToken()
	return raw, hashToken(raw)
}

// AuthenticateAgent resolves an agent's bearer token to a principal that
// names its server and no user, or nil.
func (s *Service) AuthenticateAgent(ctx context.Context, bearer string) (*Principal, error) {
	if !strings.HasPrefix(bearer, AgentTokenPrefix) || len(bearer) > 100 {
		return nil, nil
	}
	id, err := s.DB.ServerIDByAgentToken(ctx, hashToken(bearer))
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &Principal{AgentServerID: id}, nil
}

// HashToken is how every secret token is kept (SHA-256, hex): shared so that
// other packages issuing tokens store them the same way.
func HashToken(token string) string { return hashToken(token) }
