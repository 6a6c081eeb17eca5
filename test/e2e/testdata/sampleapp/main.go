// Command sampleapp is the app that the end-to-end tests deploy: a static
// binary in a FROM scratch image (test hosts cannot pull images), so the same
// binary also serves as the image's healthcheck and as a slow build step,
// which need no shell.
//
//	sampleapp                  serve HTTP on :$PORT (8080)
//	sampleapp -healthcheck     exit 0 if GET http://127.0.0.1:$PORT/healthz is 200
//	sampleapp -slow-build N    print "slow build step i/N" once a second, N times
//
// Its answers:
//
//	GET /          "hello $GREETING from $VERSION" (VERSION is the file
//	               /VERSION baked into the image; " commit $APP_COMMIT" is
//	               added when that variable is set)
//	GET /healthz   200 "ok", or 503 when FAIL_HEALTH=1
//	GET /env/NAME  the value of the environment variable NAME, 404 if unset
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	healthcheck := flag.Bool("healthcheck", false, "probe /healthz of the running server and exit")
	slowBuild := flag.Int("slow-build", 0, "take this many seconds, printing progress, and exit")
	flag.String("nonce", "", "ignored: makes a build step's command unique, so Docker never reuses a cached layer for it")
	flag.Parse()

	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	switch {
	case *healthcheck:
		os.Exit(probe(port))
	case *slowBuild > 0:
		for i := 1; i <= *slowBuild; i++ {
			time.Sleep(time.Second)
			fmt.Printf("slow build step %d/%d\n", i, *slowBuild)
		}
		return
	}

	version := "unknown"
	if b, err := os.ReadFile("/VERSION"); err == nil {
		version = strings.TrimSpace(string(b))
	}
	greeting := os.Getenv("GREETING")
	if greeting == "" {
		greeting = "world"
	}
	hello := fmt.Sprintf("hello %s from %s", greeting, version)
	if c := os.Getenv("APP_COMMIT"); c != "" {
		hello += " commit " + c
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, hello)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if os.Getenv("FAIL_HEALTH") == "1" {
			http.Error(w, "unhealthy on purpose (FAIL_HEALTH=1)", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /env/{name}", func(w http.ResponseWriter, r *http.Request) {
		v, ok := os.LookupEnv(r.PathValue("name"))
		if !ok {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, v)
	})
	fmt.Printf("sampleapp %s listening on :%s\n", version, port)
	srv := &http.Server{Addr: ":" + port, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func probe(port string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://127.0.0.1:" + port + "/healthz")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "healthz:", resp.Status)
		return 1
	}
	return 0
}
