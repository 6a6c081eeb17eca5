package web

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"upanel/internal/auth"
	"upanel/internal/deploy"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

// No job runner runs in these tests, so a deployment stays queued until the
// test moves it on with the store functions the deploy job uses: start it,
// append log lines (as the job does after masking them), end it.

func startDeployment(t *testing.T, db *store.DB, id string) {
	t.Helper()
	if _, ok, err := db.MarkDeploymentRunning(context.Background(), id); err != nil || !ok {
		t.Fatalf("start deployment: %v %v", ok, err)
	}
}

func appendLog(t *testing.T, db *store.DB, id string, lines ...string) {
	t.Helper()
	ctx := context.Background()
	d, err := db.GetDeployment(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := db.AppendDeploymentLog(ctx, id, d.LogSeq, lines, d.LogSeq+len(lines)); err != nil || !ok {
		t.Fatalf("append log: %v %v", ok, err)
	}
}

func finishDeployment(t *testing.T, db *store.DB, id, status, commit string) {
	t.Helper()
	ctx := context.Background()
	err := db.InTx(ctx, func(tx *store.Tx) error {
		_, ended, err := tx.FinishDeployment(ctx, id, store.DeploymentEnd{Status: status, Commit: commit, Error: "test end"})
		if err == nil && !ended {
			t.Errorf("deployment %s had ended already", id)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

type depJSON struct {
	ID              string  `json:"id"`
	AppID           string  `json:"app_id"`
	UserID          *string `json:"user_id"`
	Environment     string  `json:"environment"`
	Status          string  `json:"status"`
	CommitHash      string  `json:"commit_hash"`
	TriggeredBy     string  `json:"triggered_by"`
	RequestedCommit string  `json:"requested_commit"`
	IsRollback      bool    `json:"is_rollback"`
	RollbackFromID  *string `json:"rollback_from_id"`
	ErrorMessage    string  `json:"error_message"`
}

func TestDeploymentsAPI(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newAppEnv(t, db)
		e.user("admin@example.test", auth.Admin)
		op := e.user("operator@example.test", auth.Operator)
		e.user("viewer@example.test", auth.Viewer)
		opToken := e.withToken("operator@example.test", auth.Operator)
		opSession := e.loggedIn("operator@example.test")
		viewer := e.loggedIn("viewer@example.test")
		viewerToken := e.withToken("viewer@example.test", auth.Viewer)
		apps := "/api/v1/apps/" + e.app.ID + "/deployments"

		// A token's deployment is triggered by api, with the defaults.
		res := opToken.api("POST", apps, nil)
		if res.Code != http.StatusAccepted {
			t.Fatalf("deploy: %d %s", res.Code, res.Body)
		}
		first := decode[depJSON](t, res)
		if first.Status != store.DeploymentQueued || first.TriggeredBy != deploy.TriggerAPI || first.Environment != deploy.Production ||
			first.AppID != e.app.ID || first.UserID == nil || *first.UserID != op.ID || first.RollbackFromID != nil {
			t.Fatalf("deployment: %+v", first)
		}
		// A browser's is manual.
		res = opSession.api("POST", apps, map[string]string{"environment": "staging", "commit": "ABCDEF1000000000000000000000000000000000"})
		if res.Code != http.StatusAccepted {
			t.Fatalf("deploy staging: %d %s", res.Code, res.Body)
		}
		second := decode[depJSON](t, res)
		if second.TriggeredBy != deploy.TriggerManual || second.Environment != deploy.Staging || second.RequestedCommit != "abcdef1000000000000000000000000000000000" {
			t.Fatalf("staging deployment: %+v", second)
		}

		// Bad input is a 4xx that says what is wrong.
		for _, tc := range []struct {
			name, path, body string
			status           int
		}{
			{"unknown environment", apps, `{"environment":"qa"}`, http.StatusBadRequest},
			{"not a commit", apps, `{"commit":"main; rm -rf /"}`, http.StatusBadRequest},
			{"abbreviated commit", apps, `{"commit":"abcdef1"}`, http.StatusBadRequest},
			{"unknown field", apps, `{"branch":"dev"}`, http.StatusBadRequest},
			{"not JSON", apps, `{"environment":`, http.StatusBadRequest},
			{"trailing data", apps, `{} {}`, http.StatusBadRequest},
			{"wrong type", apps, `{"environment":1}`, http.StatusBadRequest},
			{"unknown app", "/api/v1/apps/" + store.NewID() + "/deployments", `{}`, http.StatusNotFound},
			{"not an id", "/api/v1/apps/nope/deployments", `{}`, http.StatusNotFound},
		} {
			res := opToken.do(newRawRequest("POST", tc.path, tc.body))
			if res.Code != tc.status || !strings.Contains(res.Body.String(), `"message"`) {
				t.Errorf("%s: %d %s", tc.name, res.Code, res.Body)
			}
		}

		// Lists, newest first, and filters.
		list := func(c *client, q string) []depJSON {
			t.Helper()
			res := c.api("GET", apps+q, nil)
			if res.Code != http.StatusOK {
				t.Fatalf("list%s: %d %s", q, res.Code, res.Body)
			}
			return decode[struct {
				Deployments []depJSON `json:"deployments"`
			}](t, res).Deployments
		}
		if got := list(viewer, ""); len(got) != 2 || got[0].ID != second.ID || got[1].ID != first.ID {
			t.Fatalf("list: %+v", got)
		}
		if got := list(viewerToken, "?environment=staging"); len(got) != 1 || got[0].ID != second.ID {
			t.Fatalf("staging list: %+v", got)
		}
		if got := list(viewer, "?limit=1"); len(got) != 1 || got[0].ID != second.ID {
			t.Fatalf("limited list: %+v", got)
		}
		for _, q := range []string{"?limit=0", "?limit=x", "?limit=501", "?environment=qa"} {
			if res := viewer.api("GET", apps+q, nil); res.Code != http.StatusBadRequest {
				t.Errorf("list%s: %d %s", q, res.Code, res.Body)
			}
		}
		if res := viewer.api("GET", "/api/v1/apps/"+store.NewID()+"/deployments", nil); res.Code != http.StatusNotFound {
			t.Errorf("list of an unknown app: %d", res.Code)
		}

		// One.
		res = viewerToken.api("GET", "/api/v1/deployments/"+first.ID, nil)
		if res.Code != http.StatusOK || decode[depJSON](t, res).ID != first.ID {
			t.Fatalf("get: %d %s", res.Code, res.Body)
		}
		for _, path := range []string{"/api/v1/deployments/" + store.NewID(), "/api/v1/deployments/" + store.NewID() + "/log",
			"/api/v1/deployments/nope"} {
			if res := viewer.api("GET", path, nil); res.Code != http.StatusNotFound {
				t.Errorf("GET %s: %d %s", path, res.Code, res.Body)
			}
		}
		for _, path := range []string{"/cancel", "/rollback"} {
			if res := opToken.api("POST", "/api/v1/deployments/"+store.NewID()+path, nil); res.Code != http.StatusNotFound {
				t.Errorf("POST unknown %s: %d %s", path, res.Code, res.Body)
			}
		}

		// A viewer reads but never writes.
		for _, c := range []*client{viewer, viewerToken} {
			for _, path := range []string{apps, "/api/v1/deployments/" + first.ID + "/cancel", "/api/v1/deployments/" + first.ID + "/rollback"} {
				if res := c.api("POST", path, nil); res.Code != http.StatusForbidden {
					t.Errorf("viewer POST %s: %d", path, res.Code)
				}
			}
		}
		if d, _ := db.GetDeployment(context.Background(), first.ID); d.Status != store.DeploymentQueued {
			t.Fatalf("a viewer changed the deployment: %s", d.Status)
		}

		// Cancel a queued deployment; a second cancel is a conflict.
		res = opToken.api("POST", "/api/v1/deployments/"+first.ID+"/cancel", nil)
		if res.Code != http.StatusOK || decode[depJSON](t, res).Status != store.DeploymentCancelled {
			t.Fatalf("cancel: %d %s", res.Code, res.Body)
		}
		if res := opToken.api("POST", "/api/v1/deployments/"+first.ID+"/cancel", nil); res.Code != http.StatusConflict {
			t.Fatalf("second cancel: %d %s", res.Code, res.Body)
		}

		// Rollback: refused from a failed or cancelled deployment, done from
		// a successful one.
		startDeployment(t, db, second.ID)
		finishDeployment(t, db, second.ID, store.DeploymentFailed, "")
		for _, id := range []string{first.ID, second.ID} {
			res := opToken.api("POST", "/api/v1/deployments/"+id+"/rollback", nil)
			if res.Code != http.StatusConflict || !strings.Contains(res.Body.String(), "only a successful deployment") {
				t.Errorf("rollback to %s: %d %s", id, res.Code, res.Body)
			}
		}
		res = opToken.api("POST", apps, map[string]string{"environment": "staging"})
		good := decode[depJSON](t, res)
		startDeployment(t, db, good.ID)
		commit := strings.Repeat("c", 40)
		finishDeployment(t, db, good.ID, store.DeploymentSuccess, commit)
		res = opSession.api("POST", "/api/v1/deployments/"+good.ID+"/rollback", nil)
		if res.Code != http.StatusAccepted {
			t.Fatalf("rollback: %d %s", res.Code, res.Body)
		}
		rb := decode[depJSON](t, res)
		if !rb.IsRollback || rb.RollbackFromID == nil || *rb.RollbackFromID != good.ID || rb.TriggeredBy != deploy.TriggerRollback ||
			rb.Environment != deploy.Staging || rb.RequestedCommit != commit || rb.Status != store.DeploymentQueued {
			t.Fatalf("rollback deployment: %+v", rb)
		}

		// Logs: plain text, after a line, and the parameters checked.
		startDeployment(t, db, rb.ID)
		appendLog(t, db, rb.ID, "step one", "step two", "step three")
		logOf := func(q string) *httptest.ResponseRecorder {
			return viewerToken.api("GET", "/api/v1/deployments/"+rb.ID+"/log"+q, nil)
		}
		res = logOf("")
		if res.Code != http.StatusOK || res.Header().Get("Content-Type") != "text/plain; charset=utf-8" ||
			res.Body.String() != "step one\nstep two\nstep three\n" || res.Header().Get("X-Deployment-Status") != store.DeploymentRunning {
			t.Fatalf("log: %d %q %q", res.Code, res.Header(), res.Body)
		}
		if res = logOf("?after=2"); res.Body.String() != "step three\n" {
			t.Fatalf("log after 2: %q", res.Body)
		}
		if res = logOf("?after=9"); res.Code != http.StatusOK || res.Body.String() != "" {
			t.Fatalf("log after 9: %d %q", res.Code, res.Body)
		}
		for _, q := range []string{"?after=-1", "?after=x", "?follow=yes"} {
			if res := logOf(q); res.Code != http.StatusBadRequest {
				t.Errorf("log%s: %d %s", q, res.Code, res.Body)
			}
		}
		// An ended deployment answers at once, even when followed.
		finishDeployment(t, db, rb.ID, store.DeploymentSuccess, commit)
		if res = logOf("?follow=1&after=1"); res.Code != http.StatusOK || res.Body.String() != "step two\nstep three\n" {
			t.Fatalf("followed log of an ended deployment: %d %q", res.Code, res.Body)
		}
	})
}

// lineReader reads a streamed answer over a real connection, line by line.
type lineReader struct {
	t      *testing.T
	res    *http.Response
	cancel context.CancelFunc
	lines  chan string // each line, then "EOF"
}

func openLines(t *testing.T, ts *httptest.Server, c *client, path string, header http.Header) *lineReader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+path, nil)
	for k, v := range c.cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		cancel()
		t.Fatalf("GET %s: %d %s", path, res.StatusCode, b)
	}
	r := &lineReader{t: t, res: res, cancel: cancel, lines: make(chan string, 1000)}
	go func() {
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			r.lines <- sc.Text()
		}
		r.lines <- "EOF"
	}()
	t.Cleanup(r.close)
	return r
}

func (r *lineReader) close() {
	r.cancel()
	r.res.Body.Close()
}

// next is the next line; the wait only bounds a test that would otherwise
// hang.
func (r *lineReader) next() string {
	r.t.Helper()
	select {
	case l := <-r.lines:
		return l
	case <-time.After(20 * time.Second):
		r.t.Fatal("no line came")
		return ""
	}
}

// expect reads lines and fails unless they are want, in order.
func (r *lineReader) expect(want ...string) {
	r.t.Helper()
	for _, w := range want {
		if got := r.next(); got != w {
			r.t.Fatalf("got line %q, want %q", got, w)
		}
	}
}

func TestDeploymentLogFollow(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newAppEnv(t, db)
		e.user("viewer@example.test", auth.Viewer)
		e.user("operator@example.test", auth.Operator)
		stop := make(chan struct{})
		e.srv.Stop = stop
		ts := httptest.NewServer(e.h)
		t.Cleanup(ts.Close)
		viewer := e.withToken("viewer@example.test", auth.Viewer)
		op := e.withToken("operator@example.test", auth.Operator)
		deployNow := func() string {
			res := op.api("POST", "/api/v1/apps/"+e.app.ID+"/deployments", nil)
			if res.Code != http.StatusAccepted {
				t.Fatalf("deploy: %d %s", res.Code, res.Body)
			}
			return decode[depJSON](t, res).ID
		}

		id := deployNow()
		// Following a queued deployment waits for it to start.
		r := openLines(t, ts, viewer, "/api/v1/deployments/"+id+"/log?follow=1", nil)
		startDeployment(t, db, id)
		appendLog(t, db, id, "fetching", "building")
		r.expect("fetching", "building")
		appendLog(t, db, id, "starting <b>web</b> with API_KEY=••••")
		r.expect("starting <b>web</b> with API_KEY=••••")
		// Lines stored with the end come out, then the answer ends.
		appendLog(t, db, id, "healthy")
		finishDeployment(t, db, id, store.DeploymentSuccess, strings.Repeat("a", 40))
		r.expect("healthy", "EOF")

		// Following from a line on.
		r = openLines(t, ts, viewer, "/api/v1/deployments/"+id+"/log?follow=1&after=3", nil)
		r.expect("healthy", "EOF")

		// The panel shutting down ends a follow.
		id = deployNow()
		startDeployment(t, db, id)
		appendLog(t, db, id, "one")
		r = openLines(t, ts, viewer, "/api/v1/deployments/"+id+"/log?follow=1", nil)
		r.expect("one")
		close(stop)
		r.expect("EOF")
	})
}

// sseEvent is one event of a text/event-stream.
type sseEvent struct {
	ID, Event, Data string
}

// nextEvent reads lines up to the end of the next event, skipping comments
// and the retry field.
func (r *lineReader) nextEvent() sseEvent {
	r.t.Helper()
	var ev sseEvent
	for {
		l := r.next()
		switch {
		case l == "EOF":
			return sseEvent{Event: "EOF"}
		case l == "":
			if ev != (sseEvent{}) {
				if ev.Event == "" {
					ev.Event = "message"
				}
				return ev
			}
		case strings.HasPrefix(l, "id: "):
			ev.ID = strings.TrimPrefix(l, "id: ")
		case strings.HasPrefix(l, "event: "):
			ev.Event = strings.TrimPrefix(l, "event: ")
		case strings.HasPrefix(l, "data: "):
			ev.Data = strings.TrimPrefix(l, "data: ")
		}
	}
}

func (r *lineReader) expectEvents(want ...sseEvent) {
	r.t.Helper()
	for _, w := range want {
		got := r.nextEvent()
		if got.Event == "status" && w.Event == "status" && w.Data != "" {
			if !strings.Contains(got.Data, w.Data) {
				r.t.Fatalf("status event %q, want it to contain %q", got.Data, w.Data)
			}
			continue
		}
		if got != w {
			r.t.Fatalf("got event %+v, want %+v", got, w)
		}
	}
}

func TestDeploymentEvents(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newAppEnv(t, db)
		e.user("viewer@example.test", auth.Viewer)
		e.user("operator@example.test", auth.Operator)
		ts := httptest.NewServer(e.h)
		t.Cleanup(ts.Close)
		viewer := e.loggedIn("viewer@example.test")
		op := e.withToken("operator@example.test", auth.Operator)
		res := op.api("POST", "/api/v1/apps/"+e.app.ID+"/deployments", nil)
		id := decode[depJSON](t, res).ID
		events := "/deployments/" + id + "/events"
		line := func(n, text string) sseEvent { return sseEvent{ID: n, Event: "message", Data: text} }
		status := func(s string) sseEvent { return sseEvent{Event: "status", Data: `"status":"` + s + `"`} }

		r := openLines(t, ts, viewer, events, nil)
		if ct := r.res.Header.Get("Content-Type"); ct != "text/event-stream; charset=utf-8" {
			t.Fatalf("content type %q", ct)
		}
		r.expectEvents(status("queued"))
		startDeployment(t, db, id)
		r.expectEvents(status("running"))
		appendLog(t, db, id, "fetching", "building")
		r.expectEvents(line("1", "fetching"), line("2", "building"))
		r.close()

		// Last-Event-ID resumes after the last line seen; ?after= is where
		// a page's stream starts.
		appendLog(t, db, id, "starting")
		r = openLines(t, ts, viewer, events, http.Header{"Last-Event-Id": {"2"}})
		r.expectEvents(line("3", "starting"), status("running"))
		r.close()
		r = openLines(t, ts, viewer, events+"?after=1", nil)
		r.expectEvents(line("2", "building"), line("3", "starting"), status("running"))
		r.close()
		r = openLines(t, ts, viewer, events+"?after=1", http.Header{"Last-Event-Id": {"3"}})
		r.expectEvents(status("running"))

		// A cancel request and the end are status events; the stream ends
		// with the deployment.
		if _, err := e.srv.Deploy.Cancel(context.Background(), nil, id, auth.Meta{}); err != nil {
			t.Fatal(err)
		}
		r.expectEvents(sseEvent{Event: "status", Data: `"cancel_requested":true`})
		appendLog(t, db, id, "stopping")
		finishDeployment(t, db, id, store.DeploymentCancelled, "")
		r.expectEvents(line("4", "stopping"), sseEvent{Event: "status", Data: `"status":"cancelled","terminal":true`}, sseEvent{Event: "EOF"})

		// An ended deployment's stream sends what is left and ends.
		r = openLines(t, ts, viewer, events, http.Header{"Last-Event-Id": {"3"}})
		r.expectEvents(line("4", "stopping"), status("cancelled"), sseEvent{Event: "EOF"})

		// Bad positions and unknown deployments.
		for path, want := range map[string]int{
			events + "?after=-2":                                             http.StatusBadRequest,
			"/deployments/" + store.NewID() + "/events":                      http.StatusNotFound,
			"/deployments/" + store.NewID():                                  http.StatusNotFound,
			"/apps/" + store.NewID() + "/deployments":                        http.StatusNotFound,
			"/deployments/not-an-id/events":                                  http.StatusNotFound,
			"/deployments/" + id + "/events?after=" + url.QueryEscape("1 2"): http.StatusBadRequest,
		} {
			if res := viewer.get(path); res.Code != want {
				t.Errorf("GET %s: %d, want %d", path, res.Code, want)
			}
		}
	})
}

func TestDeploymentPages(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newAppEnv(t, db)
		e.user("operator@example.test", auth.Operator)
		e.user("viewer@example.test", auth.Viewer)
		op := e.loggedIn("operator@example.test")
		viewer := e.loggedIn("viewer@example.test")
		list := "/apps/" + e.app.ID + "/deployments"

		res := op.get(list)
		if res.Code != http.StatusOK || !strings.Contains(res.Body.String(), `action="`+list+`"`) || !strings.Contains(res.Body.String(), "No deployments yet") {
			t.Fatalf("list page: %d %s", res.Code, res.Body)
		}
		// Deploy staging from the form: on to the new deployment's page.
		res = op.postForm(list, url.Values{"environment": {"staging"}, "commit": {""}})
		if res.Code != http.StatusSeeOther || !strings.HasPrefix(res.Header().Get("Location"), "/deployments/") {
			t.Fatalf("deploy form: %d %q %s", res.Code, res.Header().Get("Location"), res.Body)
		}
		id := strings.TrimPrefix(res.Header().Get("Location"), "/deployments/")
		d, err := db.GetDeployment(ctx, id)
		if err != nil || d.Environment != deploy.Staging || d.TriggeredBy != deploy.TriggerManual {
			t.Fatalf("deployment: %+v %v", d, err)
		}
		page := op.get("/deployments/" + id).Body.String()
		for _, want := range []string{"Deployment queued.", `action="/deployments/` + id + `/cancel"`, `data-events="/deployments/` + id + `/events?after=0"`,
			"/static/deployment.js", "queued"} {
			if !strings.Contains(page, want) {
				t.Errorf("deployment page lacks %q", want)
			}
		}
		// A refused deploy shows why on the list, with the form kept.
		res = op.postForm(list, url.Values{"environment": {"staging"}, "commit": {"not-a-commit"}})
		if res.Code != http.StatusBadRequest || !strings.Contains(res.Body.String(), "The commit must be a whole commit id") ||
			!strings.Contains(res.Body.String(), `value="not-a-commit"`) {
			t.Fatalf("refused deploy: %d %s", res.Code, res.Body)
		}

		// The log renders as text.
		startDeployment(t, db, id)
		appendLog(t, db, id, `<script>alert("x")</script> & done`)
		page = viewer.get("/deployments/" + id).Body.String()
		if strings.Contains(page, `<script>alert`) || !strings.Contains(page, `&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; done`) ||
			!strings.Contains(page, `events?after=1"`) {
			t.Fatalf("log on the page: %s", page)
		}
		// A viewer sees no buttons and may not press them.
		if strings.Contains(page, "/cancel") || strings.Contains(viewer.get(list).Body.String(), `name="environment"`) {
			t.Fatal("a viewer is offered buttons")
		}
		for _, path := range []string{list, "/deployments/" + id + "/cancel", "/deployments/" + id + "/rollback"} {
			if res := viewer.postForm(path, nil); res.Code != http.StatusForbidden {
				t.Errorf("viewer POST %s: %d", path, res.Code)
			}
		}

		// Cancel a running one: requested; then it fails, and cannot be
		// rolled back to.
		res = op.postForm("/deployments/"+id+"/cancel", nil)
		if res.Code != http.StatusSeeOther || res.Header().Get("Location") != "/deployments/"+id {
			t.Fatalf("cancel: %d %s", res.Code, res.Body)
		}
		if page := op.get("/deployments/" + id).Body.String(); !strings.Contains(page, "Cancel requested") || strings.Contains(page, `/cancel"`) {
			t.Fatalf("after a cancel request: %s", page)
		}
		finishDeployment(t, db, id, store.DeploymentFailed, "")
		res = op.postForm("/deployments/"+id+"/rollback", nil)
		if res.Code != http.StatusSeeOther || res.Header().Get("Location") != list {
			t.Fatalf("rollback of a failed deployment: %d %q", res.Code, res.Header().Get("Location"))
		}
		if !strings.Contains(op.get(list).Body.String(), "Not rolled back: Only a successful deployment") {
			t.Fatal("no message for the refused rollback")
		}

		// A successful one has a rollback button, which queues a rollback.
		res = op.postForm(list, url.Values{"environment": {"production"}})
		good := strings.TrimPrefix(res.Header().Get("Location"), "/deployments/")
		startDeployment(t, db, good)
		finishDeployment(t, db, good, store.DeploymentSuccess, strings.Repeat("b", 40))
		if !strings.Contains(op.get(list).Body.String(), `action="/deployments/`+good+`/rollback"`) {
			t.Fatal("no rollback button on a successful deployment")
		}
		res = op.postForm("/deployments/"+good+"/rollback", nil)
		if res.Code != http.StatusSeeOther || !strings.HasPrefix(res.Header().Get("Location"), "/deployments/") {
			t.Fatalf("rollback: %d %s", res.Code, res.Body)
		}
		rb, err := db.GetDeployment(ctx, strings.TrimPrefix(res.Header().Get("Location"), "/deployments/"))
		if err != nil || !rb.IsRollback || rb.RollbackFromID != good {
			t.Fatalf("rollback: %+v %v", rb, err)
		}
		// Cancel a queued one: at once.
		if res := op.postForm("/deployments/"+rb.ID+"/cancel", nil); res.Code != http.StatusSeeOther {
			t.Fatalf("cancel queued: %d", res.Code)
		}
		if d, _ := db.GetDeployment(ctx, rb.ID); d.Status != store.DeploymentCancelled {
			t.Fatalf("cancelled deployment is %s", d.Status)
		}
		if !strings.Contains(op.get("/deployments/"+rb.ID).Body.String(), "Deployment cancelled.") {
			t.Fatal("no message for the cancel")
		}
	})
}
