package machost

import (
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// ForwardLoopback makes 127.0.0.1:port inside every host reach 127.0.0.1:port
// on the test machine, for each port: the kube-apiserver, the registry, ...
// keep their loopback addresses (and certificates) as the hosts' vz-node
// sees them. The forwards live until Stop.
func (l *Lab) ForwardLoopback(ports ...int) error {
	for _, h := range l.Hosts {
		for _, port := range ports {
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			ln, err := listenInNamespace("/run/netns/"+h.Namespace, addr)
			if err != nil {
				return fmt.Errorf("machost: %s: forwarding %s: %w", h.Name, addr, err)
			}
			l.impl.forwardsMu.Lock()
			l.impl.forwards = append(l.impl.forwards, ln)
			l.impl.forwardsMu.Unlock()
			go serveForward(ln, addr)
		}
	}
	return nil
}

// listenInNamespace opens a listening socket inside a network namespace: the
// socket belongs to the namespace it was created in, while this process
// keeps serving it from the machine's namespace.
func listenInNamespace(nsPath, addr string) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer orig.Close()
		target, err := os.Open(nsPath)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("setns %s: %w", nsPath, err)}
			return
		}
		ln, lerr := net.Listen("tcp", addr)
		// A thread that cannot switch back stays locked, and the runtime
		// retires it when this goroutine ends.
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{ln, lerr}
	}()
	r := <-ch
	return r.ln, r.err
}

func serveForward(ln net.Listener, target string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			up, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			defer up.Close()
			var wg sync.WaitGroup
			wg.Add(2)
			pipe := func(dst, src net.Conn) {
				defer wg.Done()
				_, _ = io.Copy(dst, src)
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
			}
			go pipe(up, c)
			go pipe(c, up)
			wg.Wait()
		}()
	}
}
