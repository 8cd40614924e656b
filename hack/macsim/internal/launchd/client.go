package launchd

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// Launchctl implements the launchctl(1) client: it hands its arguments to
// the host's launchd and prints the answer.
func Launchctl(args []string, stdout, stderr io.Writer) int {
	sock := os.Getenv(SocketEnv)
	if sock == "" {
		sock = DefaultSocket
	}
	cwd, _ := os.Getwd()
	resp, err := Call(sock, Request{Args: args, Cwd: cwd})
	if err != nil {
		fmt.Fprintf(stderr, "launchctl: %v\n", err)
		return 1
	}
	io.WriteString(stdout, resp.Stdout)
	io.WriteString(stderr, resp.Stderr)
	return resp.Exit
}

// Call sends one request to the launchd listening on sock.
func Call(sock string, req Request) (Response, error) {
	var resp Response
	conn, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return resp, fmt.Errorf("cannot reach macsim's launchd at %s (is the simulated host booted?): %w", sock, err)
	}
	defer conn.Close()
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return resp, fmt.Errorf("talking to launchd at %s: %w", sock, err)
	}
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		return resp, fmt.Errorf("reading launchd's answer from %s: %w", sock, err)
	}
	return resp, nil
}
