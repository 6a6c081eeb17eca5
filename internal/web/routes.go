package web

import (
	"net/http"

	"upanel/internal/auth"
	"upanel/internal/deploy"
	"upanel/internal/fleet"
	"upanel/internal/wire"
)

// routeTable is every route of the panel, UI and API, with the permission it
// needs. It is the attack surface in one place: a route reaches its handler
// only through guard, which asks auth.Decide. There is no default permission;
// the route × role test walks this table.
func (s *Server) routeTable() []route {
	pub, step, anySession, signedIn, self, read, operate, admin, agent := auth.Public, auth.TwoFactorStep, auth.AnySession, auth.SignedIn,
		auth.Self, auth.Read, auth.Operate, auth.AdminOnly, auth.AgentOnly
	html := func(pattern string, perm auth.Permission, h func(http.ResponseWriter, *http.Request, *auth.Principal)) route {
		return route{pattern: pattern, perm: perm, h: h}
	}
	api := func(pattern string, perm auth.Permission, h func(http.ResponseWriter, *http.Request, *auth.Principal)) route {
		return route{pattern: pattern, perm: perm, api: true, h: h}
	}
	// machine routes are called by programs proving themselves with their
	// own secret (an agent token, a bootstrap token), not by browsers.
	machine := func(pattern string, perm auth.Permission, h func(http.ResponseWriter, *http.Request, *auth.Principal)) route {
		return route{pattern: pattern, perm: perm, api: true, machine: true, h: h}
	}
	return []route{
		html("GET /healthz", pub, s.healthz),
		html("GET /readyz", pub, s.readyz),
		html("GET /static/", pub, s.static),
		html("GET /{$}", pub, s.home),

		// First run and signing in.
		html("GET /setup", pub, s.setupPage),
		html("POST /setup", pub, s.setupSubmit),
		html("GET /login", pub, s.loginPage),
		html("POST /login", pub, s.loginSubmit),
		html("GET /login/two-factor", step, s.twoFactorPage),
		html("POST /login/two-factor", step, s.twoFactorSubmit),
		html("GET /login/recovery", step, s.recoveryPage),
		html("POST /login/recovery", step, s.recoverySubmit),
		html("POST /logout", anySession, s.logout),
		html("GET /password/forgot", pub, s.forgotPage),
		html("POST /password/forgot", pub, s.forgotSubmit),
		html("GET /password/reset", pub, s.resetPage),
		html("POST /password/reset", pub, s.resetSubmit),
		html("GET /invite/accept", pub, s.invitePage),
		html("POST /invite/accept", pub, s.inviteSubmit),

		// The caller's own account.
		html("GET /dashboard", self, s.dashboard),
		html("GET /profile", self, s.profile),
		html("POST /profile/password", self, s.changePassword),
		html("POST /profile/timezone", self, s.changeTimezone),
		html("GET /profile/two-factor", signedIn, s.twoFactorEnrollPage),
		html("POST /profile/two-factor/start", signedIn, s.twoFactorStart),
		html("POST /profile/two-factor/confirm", signedIn, s.twoFactorConfirm),
		html("POST /profile/two-factor/disable", self, s.twoFactorDisable),
		html("POST /profile/two-factor/recovery-codes", self, s.recoveryCodesRegenerate),
		html("POST /profile/sessions/{id}/revoke", self, s.sessionRevoke),
		html("POST /profile/tokens", self, s.tokenCreate),
		html("POST /profile/tokens/{id}/revoke", self, s.tokenRevoke),

		// The caller's own notifications.
		html("GET /notifications", self, s.notificationsPage),
		html("POST /notifications/{id}/read", self, s.notificationRead),
		html("POST /notifications/read-all", self, s.notificationsReadAll),
		html("GET /notifications/settings", self, s.notificationSettingsPage),
		html("POST /notifications/settings", self, s.notificationSettingsSubmit),
		html("GET "+notificationStreamPath, self, s.notificationStream),

		// Administration.
		html("GET /admin/users", admin, s.usersPage),
		html("POST /admin/users/{id}/role", admin, s.userRole),
		html("POST /admin/users/{id}/delete", admin, s.userDelete),
		html("POST /admin/invites", admin, s.inviteCreate),
		html("POST /admin/invites/{id}/revoke", admin, s.inviteRevoke),
		html("GET /admin/settings", admin, s.settingsPage),
		html("POST /admin/settings", admin, s.settingsSubmit),
		html("GET /admin/security-events", admin, s.securityEventsPage),
		html("GET /settings/webhooks", admin, s.webhooksPage),
		html("POST /settings/webhooks", admin, s.webhookCreate),
		html("GET /settings/webhooks/{id}", admin, s.webhookPage),
		html("POST /settings/webhooks/{id}", admin, s.webhookUpdate),
		html("POST /settings/webhooks/{id}/test", admin, s.webhookTest),
		html("POST /settings/webhooks/{id}/rotate-secret", admin, s.webhookRotate),
		html("POST /settings/webhooks/{id}/delete", admin, s.webhookDelete),
		html("GET /activity", read, s.activityPage),

		// Servers.
		html("GET /servers", read, s.serversPage),
		html("GET /servers/new", operate, s.serverNewPage),
		html("POST /servers", operate, s.serverCreate),
		html("GET /servers/{id}", read, s.serverPage),
		html("POST /servers/{id}/{action}", operate, s.serverAction),
		machine("GET /bootstrap/{token}", pub, s.bootstrapScript),
		machine("POST /bootstrap/{token}/host-keys", pub, s.bootstrapReport),
		// Push-to-deploy: the hook's secret is the authentication.
		machine("POST /hooks/deploy/{hookID}", pub, s.deployHook),

		// Apps and git credentials.
		html("GET /apps", read, s.appsPage),
		html("GET /apps/new", operate, s.appNewPage),
		html("POST /apps", operate, s.appCreate),
		html("GET /apps/{id}", read, s.appPage),
		html("POST /apps/{id}", operate, s.appUpdate),
		html("POST /apps/{id}/env", operate, s.appEnvSubmit),
		html("POST /apps/{id}/rotate-hook-secret", operate, s.appRotateHook),
		html("POST /apps/{id}/test", operate, s.appTest),
		html("POST /apps/{id}/delete", operate, s.appDelete),
		html("GET /credentials", read, s.credentialsPage),
		html("GET /credentials/new", operate, s.credentialNewPage),
		html("POST /credentials", operate, s.credentialCreate),
		html("GET /credentials/{id}", read, s.credentialPage),
		html("POST /credentials/{id}", operate, s.credentialUpdate),
		html("POST /credentials/{id}/delete", operate, s.credentialDelete),
		html("POST /credentials/{id}/test", operate, s.credentialTest),

		// Running apps.
		html("GET /apps/{id}/running", read, s.appRunningPage),
		html("POST /apps/{id}/control", operate, s.appControl),
		html("GET /apps/{id}/deployments", read, s.deploymentsPage),
		html("POST /apps/{id}/deployments", operate, s.deploymentCreate),
		html("GET /deployments/{id}", read, s.deploymentPage),
		html("GET /deployments/{id}/events", read, s.deploymentEvents),
		html("POST /deployments/{id}/cancel", operate, s.deploymentCancel),
		html("POST /deployments/{id}/rollback", operate, s.deploymentRollback),
		api("GET /metrics", read, s.prometheus), // a scrape target: tokens and JSON errors, like the API

		// JSON API.
		api("GET /api/v1/openapi.json", pub, s.openAPI),
		api("GET /api/v1/me", self, s.apiMe),
		api("GET /api/v1/users", admin, s.apiUsers),
		api("GET /api/v1/users/{id}", admin, s.apiUser),
		api("PATCH /api/v1/users/{id}", admin, s.apiUserUpdate),
		api("DELETE /api/v1/users/{id}", admin, s.apiUserDelete),
		api("GET /api/v1/invites", admin, s.apiInvites),
		api("POST /api/v1/invites", admin, s.apiInviteCreate),
		api("DELETE /api/v1/invites/{id}", admin, s.apiInviteRevoke),
		api("GET /api/v1/tokens", self, s.apiTokens),
		api("POST /api/v1/tokens", self, s.apiTokenCreate),
		api("DELETE /api/v1/tokens/{id}", self, s.apiTokenRevoke),
		api("GET /api/v1/sessions", self, s.apiSessions),
		api("DELETE /api/v1/sessions/{id}", self, s.apiSessionRevoke),
		api("GET /api/v1/notifications", self, s.apiNotifications),
		api("POST /api/v1/notifications/{id}/read", self, s.apiNotificationRead),
		api("POST /api/v1/notifications/read-all", self, s.apiNotificationsReadAll),
		api("GET /api/v1/notifications/preferences", self, s.apiNotificationPreferences),
		api("PUT /api/v1/notifications/preferences", self, s.apiNotificationPreferencesUpdate),
		api("GET /api/v1/security-events", admin, s.apiSecurityEvents),
		api("GET /api/v1/activity", read, s.apiActivity),
		api("GET /api/v1/servers", read, s.apiServers),
		api("POST /api/v1/servers", operate, s.apiServerCreate),
		api("GET /api/v1/servers/{id}", read, s.apiServer),
		api("PATCH /api/v1/servers/{id}", operate, s.apiServerUpdate),
		api("DELETE /api/v1/servers/{id}", operate, s.apiServerDelete),
		api("POST /api/v1/servers/{id}/bootstrap-command", operate, s.apiServerBootstrap),
		api("POST /api/v1/servers/{id}/host-key/scan", operate, s.apiServerScan),
		api("POST /api/v1/servers/{id}/host-key/confirm", operate, s.apiServerConfirm),
		api("POST /api/v1/servers/{id}/onboard", operate, s.apiServerOnboard),
		api("POST /api/v1/servers/{id}/provision", operate, s.apiServerJob(fleet.ProvisionKind)),
		api("POST /api/v1/servers/{id}/harden", operate, s.apiServerJob(fleet.HardenKind)),
		api("POST /api/v1/servers/{id}/maintenance", operate, s.apiServerMaintenance),
		api("POST /api/v1/servers/{id}/audit", operate, s.apiServerAudit),
		api("GET /api/v1/servers/{id}/audit", read, s.apiServerChecks),
		api("GET /api/v1/servers/{id}/metrics", read, s.apiServerMetrics),
		api("GET /api/v1/jobs/{id}", read, s.apiJob),
		api("GET /api/v1/git-credentials", read, s.apiCredentials),
		api("POST /api/v1/git-credentials", operate, s.apiCredentialCreate),
		api("GET /api/v1/git-credentials/{id}", read, s.apiCredential),
		api("PATCH /api/v1/git-credentials/{id}", operate, s.apiCredentialUpdate),
		api("DELETE /api/v1/git-credentials/{id}", operate, s.apiCredentialDelete),
		api("POST /api/v1/git-credentials/{id}/test", operate, s.apiCredentialTest),
		api("GET /api/v1/apps", read, s.apiApps),
		api("POST /api/v1/apps", operate, s.apiAppCreate),
		api("GET /api/v1/apps/{id}", read, s.apiApp),
		api("PATCH /api/v1/apps/{id}", operate, s.apiAppUpdate),
		api("DELETE /api/v1/apps/{id}", operate, s.apiAppDelete),
		api("GET /api/v1/apps/{id}/env", read, s.apiAppEnv),
		api("PATCH /api/v1/apps/{id}/env/{scope}", operate, s.apiAppEnvUpdate),
		api("POST /api/v1/apps/{id}/test", operate, s.apiAppTest),
		api("POST /api/v1/apps/{id}/rotate-hook-secret", operate, s.apiAppRotateHookSecret),
		api("GET /api/v1/apps/{id}/status", read, s.apiAppStatus),
		api("POST /api/v1/apps/{id}/start", operate, s.apiAppControl(deploy.ActionStart)),
		api("POST /api/v1/apps/{id}/stop", operate, s.apiAppControl(deploy.ActionStop)),
		api("POST /api/v1/apps/{id}/restart", operate, s.apiAppControl(deploy.ActionRestart)),
		api("GET /api/v1/apps/{id}/logs", read, s.apiAppLogs),
		api("GET /api/v1/apps/{id}/hook-deliveries", read, s.apiAppHookDeliveries),
		api("POST /api/v1/apps/{id}/deployments", operate, s.apiDeploymentCreate),
		api("GET /api/v1/apps/{id}/deployments", read, s.apiDeployments),
		api("GET /api/v1/deployments/{id}", read, s.apiDeployment),
		api("GET /api/v1/deployments/{id}/log", read, s.apiDeploymentLog),
		api("POST /api/v1/deployments/{id}/cancel", operate, s.apiDeploymentCancel),
		api("POST /api/v1/deployments/{id}/rollback", operate, s.apiDeploymentRollback),
		api("GET /api/v1/webhooks", admin, s.apiWebhooks),
		api("POST /api/v1/webhooks", admin, s.apiWebhookCreate),
		api("GET /api/v1/webhooks/{id}", admin, s.apiWebhook),
		api("PATCH /api/v1/webhooks/{id}", admin, s.apiWebhookUpdate),
		api("DELETE /api/v1/webhooks/{id}", admin, s.apiWebhookDelete),
		api("POST /api/v1/webhooks/{id}/test", admin, s.apiWebhookTest),
		api("POST /api/v1/webhooks/{id}/rotate-secret", admin, s.apiWebhookRotate),
		api("GET /api/v1/webhooks/{id}/deliveries", admin, s.apiWebhookDeliveries),

		// The agents' side of the link.
		machine("POST "+wire.PathHeartbeat, agent, s.agentHeartbeat),
		machine("POST "+wire.PathMetrics, agent, s.agentMetrics),
		machine("POST "+wire.PathAudit, agent, s.agentAudit),
	}
}
