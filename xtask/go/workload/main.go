// Command workload stands in for the apps seal serves (ml-api, ml-batch) in the test
// environment's pods. It never prints a secret: it reports SHA-256 digests of the environment
// variables and files it is told to watch, so a test can check what the app received without
// the values appearing in a log, an Event or a test's output.
//
//	workload serve        HTTP on :8080 (WORKLOAD_PORT): /healthz, and /report (JSON digests)
//	workload report       the same JSON once on stdout, then exit 0 (Jobs)
//
// WORKLOAD_DIGEST_ENV names the variables (comma-separated) and WORKLOAD_DIGEST_FILES the files
// to digest; SIGHUP (what seal-agent sends after it rewrites files) is counted in "reloads".
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
)

var reloads atomic.Int64

type report struct {
	Env     map[string]string `json:"env"`
	Files   map[string]string `json:"files"`
	Reloads int64             `json:"reloads"`
}

func digest(value []byte) string {
	sum := sha256.Sum256(value)
	return hex.EncodeToString(sum[:])
}

func names(variable string) []string {
	var out []string
	for _, name := range strings.Split(os.Getenv(variable), ",") {
		if name = strings.TrimSpace(name); name != "" {
			out = append(out, name)
		}
	}
	return out
}

func current() report {
	r := report{Env: map[string]string{}, Files: map[string]string{}, Reloads: reloads.Load()}
	for _, name := range names("WORKLOAD_DIGEST_ENV") {
		if value, ok := os.LookupEnv(name); ok {
			r.Env[name] = digest([]byte(value))
		}
	}
	for _, path := range names("WORKLOAD_DIGEST_FILES") {
		if content, err := os.ReadFile(path); err == nil {
			r.Files[path] = digest(content)
		}
	}
	return r
}

func main() {
	hangups := make(chan os.Signal, 1)
	signal.Notify(hangups, syscall.SIGHUP)
	go func() {
		for range hangups {
			reloads.Add(1)
		}
	}()
	mode := "serve"
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	switch mode {
	case "report":
		if err := json.NewEncoder(os.Stdout).Encode(current()); err != nil {
			os.Exit(1)
		}
	case "serve":
		port := os.Getenv("WORKLOAD_PORT")
		if port == "" {
			port = "8080"
		}
		http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintln(w, "ok")
		})
		http.HandleFunc("/report", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(current())
		})
		if err := http.ListenAndServe(":"+port, nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	default:
		fmt.Fprintln(os.Stderr, "usage: workload serve | report")
		os.Exit(2)
	}
}
