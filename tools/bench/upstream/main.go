// Command upstream is the fast upstream of `npm run bench`: a minimal HTTP/1.1 server standing in for the parts of
// Mattermost's API a proxy benchmark touches, with as little work per request as possible, so that what is measured
// through nginx is nginx.
//
//	GET /api/v4/system/ping   200 {"status":"OK"}, Cache-Control: no-cache (so nginx's proxy_cache never answers it)
//	GET /api/v4/websocket     RFC 6455 upgrade; echoes text and binary messages, answers pings, returns close frames
//	GET /api/v4/users/websocket  the same
//
// With -work D every ping first spends D of CPU (hashing), to show the proxy's share next to an upstream that does
// real work per request, as Mattermost's API handlers do.
//
// Standard library only; built by tools/bench with Debian's Go (GO111MODULE=off), offline.
package main

import (
	"bufio"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var pingBody = []byte(`{"status":"OK","ActiveSearchBackend":"database"}`)

// workRounds is how many SHA-256 rounds over workBlock each ping computes (-work; 0 by default): CPU spent per
// request, for scale, as a real API handler spends it.
var (
	workRounds int
	workBlock  = make([]byte, 1024)
	workSink   [32]byte
)

func burn(rounds int) {
	sum := workSink
	for i := 0; i < rounds; i++ {
		copy(workBlock, sum[:])
		sum = sha256.Sum256(workBlock)
	}
	workSink = sum
}

// calibrate returns the rounds of burn that take d of CPU on this machine (the fastest of several tries).
func calibrate(d time.Duration) int {
	const probe = 2000
	best := time.Duration(1<<63 - 1)
	for i := 0; i < 5; i++ {
		start := time.Now()
		burn(probe)
		if t := time.Since(start); t < best {
			best = t
		}
	}
	return int(float64(probe) * float64(d) / float64(best))
}

func ping(w http.ResponseWriter, _ *http.Request) {
	if workRounds > 0 {
		burn(workRounds)
	}
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Cache-Control"] = []string{"no-cache"}
	h["Content-Length"] = []string{strconv.Itoa(len(pingBody))}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(pingBody)
}

// websocketAccept is the Sec-WebSocket-Accept value for a client key (RFC 6455 section 4.2.2).
func websocketAccept(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(sum[:])
}

func headerHas(r *http.Request, name, token string) bool {
	for _, v := range r.Header.Values(name) {
		for _, part := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}

func websocket(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if !headerHas(r, "Connection", "upgrade") || !headerHas(r, "Upgrade", "websocket") || key == "" {
		http.Error(w, "websocket upgrade expected", http.StatusBadRequest)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "no hijacking", http.StatusInternalServerError)
		return
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + websocketAccept(key) + "\r\n\r\n")
	if rw.Flush() != nil {
		return
	}
	_ = echo(rw.Reader, rw.Writer)
}

const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
	maxMessage     = 1 << 20
)

// echo reads client frames (always masked) and writes each complete message back unmasked.
func echo(r *bufio.Reader, w *bufio.Writer) error {
	var message []byte
	var messageOp byte
	head := make([]byte, 14)
	for {
		if _, err := io.ReadFull(r, head[:2]); err != nil {
			return err
		}
		fin := head[0]&0x80 != 0
		op := head[0] & 0x0F
		if head[1]&0x80 == 0 {
			return errors.New("unmasked client frame")
		}
		length := uint64(head[1] & 0x7F)
		switch length {
		case 126:
			if _, err := io.ReadFull(r, head[:2]); err != nil {
				return err
			}
			length = uint64(binary.BigEndian.Uint16(head[:2]))
		case 127:
			if _, err := io.ReadFull(r, head[:8]); err != nil {
				return err
			}
			length = binary.BigEndian.Uint64(head[:8])
		}
		if length > maxMessage {
			return errors.New("frame too large")
		}
		var mask [4]byte
		if _, err := io.ReadFull(r, mask[:]); err != nil {
			return err
		}
		payload := make([]byte, length)
		if _, err := io.ReadFull(r, payload); err != nil {
			return err
		}
		for i := range payload {
			payload[i] ^= mask[i%4]
		}
		switch op {
		case opPing:
			if err := writeFrame(w, opPong, payload); err != nil {
				return err
			}
		case opPong:
		case opClose:
			_ = writeFrame(w, opClose, payload)
			return nil
		case opText, opBinary, opContinuation:
			if op != opContinuation {
				messageOp = op
				message = message[:0]
			}
			message = append(message, payload...)
			if len(message) > maxMessage {
				return errors.New("message too large")
			}
			if fin {
				if err := writeFrame(w, messageOp, message); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("unknown opcode %d", op)
		}
	}
}

func writeFrame(w *bufio.Writer, op byte, payload []byte) error {
	head := []byte{0x80 | op}
	n := len(payload)
	switch {
	case n < 126:
		head = append(head, byte(n))
	case n <= 0xFFFF:
		head = append(head, 126, byte(n>>8), byte(n))
	default:
		head = append(head, 127)
		head = binary.BigEndian.AppendUint64(head, uint64(n))
	}
	if _, err := w.Write(head); err != nil {
		return err
	}
	if _, err := w.Write(payload); err != nil {
		return err
	}
	return w.Flush()
}

func main() {
	listen := flag.String("listen", "127.0.0.1:18065", "address to listen on")
	work := flag.Duration("work", 0, "CPU time each ping spends (computing hashes) before it answers, e.g. 250us")
	flag.Parse()
	if *work > 0 {
		workRounds = calibrate(*work)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v4/system/ping", ping)
	mux.HandleFunc("/api/v4/websocket", websocket)
	mux.HandleFunc("/api/v4/users/websocket", websocket)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	// The harness waits for this line before it sends load.
	fmt.Printf("listening on %s (work per ping: %v, %d hash rounds)\n", ln.Addr(), *work, workRounds)
	server := &http.Server{Handler: mux, ErrorLog: log.New(io.Discard, "", 0)}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		_ = ln.Close()
		os.Exit(0)
	}()
	if err := server.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
		log.Fatal(err)
	}
}
