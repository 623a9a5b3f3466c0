// Command pionpeer runs one pion/ice agent for icestack's interop tests.
//
// It speaks line-based JSON: events on stdout, commands on stdin.
//
//	out: {"type":"credentials","ufrag":..,"pwd":..}   first, before gathering
//	out: {"type":"candidate","candidate":"candidate:..."} per local candidate
//	out: {"type":"gathered"}                              gathering is done
//	out: {"type":"state","state":"checking"}              ICE connection state changes
//	out: {"type":"connected","local":..,"remote":..}      Dial/Accept returned: the selected pair
//	out: {"type":"recv","data":<base64>}                  a datagram from the peer
//	out: {"type":"error","error":..}                      something failed
//	in:  {"type":"credentials","ufrag":..,"pwd":..}       the peer's; starts the checks
//	in:  {"type":"candidate","candidate":"candidate:..."} a remote candidate
//	in:  {"type":"send","data":<base64>}                  send a datagram (once connected)
//
// The agent is controlling with -controlling (Dial), controlled otherwise (Accept). It
// gathers UDP over IPv4 host candidates on loopback only. End of input closes the agent.
// pion's logs go to stderr.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"

	"github.com/pion/ice/v2"
	"github.com/pion/logging"
)

type message struct {
	Type      string `json:"type"`
	Ufrag     string `json:"ufrag,omitempty"`
	Pwd       string `json:"pwd,omitempty"`
	Candidate string `json:"candidate,omitempty"`
	Data      []byte `json:"data,omitempty"`
	State     string `json:"state,omitempty"`
	Local     string `json:"local,omitempty"`
	Remote    string `json:"remote,omitempty"`
	Error     string `json:"error,omitempty"`
}

type output struct {
	mu      sync.Mutex
	encoder *json.Encoder
}

func (o *output) emit(m message) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.encoder.Encode(m); err != nil {
		os.Exit(3) // the test is gone
	}
}

func (o *output) fail(what string, err error) {
	o.emit(message{Type: "error", Error: fmt.Sprintf("%s: %v", what, err)})
}

func main() {
	controlling := flag.Bool("controlling", false, "be the controlling agent (Dial)")
	flag.Parse()
	out := &output{encoder: json.NewEncoder(os.Stdout)}
	logs := logging.NewDefaultLoggerFactory() // PION_LOG_TRACE=all etc. raise the level
	logs.Writer = os.Stderr                   // stdout is the event stream

	agent, err := ice.NewAgent(&ice.AgentConfig{
		NetworkTypes:     []ice.NetworkType{ice.NetworkTypeUDP4},
		CandidateTypes:   []ice.CandidateType{ice.CandidateTypeHost},
		MulticastDNSMode: ice.MulticastDNSModeDisabled,
		IncludeLoopback:  true,
		IPFilter:         func(ip net.IP) bool { return ip.IsLoopback() },
		LoggerFactory:    logs,
	})
	if err != nil {
		out.fail("NewAgent", err)
		os.Exit(1)
	}
	defer agent.Close() //nolint:errcheck

	ufrag, pwd, err := agent.GetLocalUserCredentials()
	if err != nil {
		out.fail("GetLocalUserCredentials", err)
		os.Exit(1)
	}
	out.emit(message{Type: "credentials", Ufrag: ufrag, Pwd: pwd})

	must := func(what string, err error) {
		if err != nil {
			out.fail(what, err)
			os.Exit(1)
		}
	}
	must("OnCandidate", agent.OnCandidate(func(c ice.Candidate) {
		if c == nil {
			out.emit(message{Type: "gathered"})
			return
		}
		out.emit(message{Type: "candidate", Candidate: "candidate:" + c.Marshal()})
	}))
	must("OnConnectionStateChange", agent.OnConnectionStateChange(func(s ice.ConnectionState) {
		out.emit(message{Type: "state", State: s.String()})
	}))
	must("GatherCandidates", agent.GatherCandidates())

	var conn *ice.Conn
	ready := make(chan struct{})
	connect := func(remoteUfrag, remotePwd string) {
		var err error
		if *controlling {
			conn, err = agent.Dial(context.Background(), remoteUfrag, remotePwd)
		} else {
			conn, err = agent.Accept(context.Background(), remoteUfrag, remotePwd)
		}
		if err != nil {
			out.fail("connect", err)
			return
		}
		pair, err := agent.GetSelectedCandidatePair()
		if err != nil {
			out.fail("GetSelectedCandidatePair", err)
			return
		}
		out.emit(message{Type: "connected", Local: pair.Local.Marshal(), Remote: pair.Remote.Marshal()})
		close(ready)
		buf := make([]byte, 2048)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return // closed
			}
			out.emit(message{Type: "recv", Data: append([]byte(nil), buf[:n]...)})
		}
	}

	input := bufio.NewScanner(os.Stdin)
	input.Buffer(make([]byte, 65536), 65536)
	for input.Scan() {
		var m message
		if err := json.Unmarshal(input.Bytes(), &m); err != nil {
			out.fail("bad command", err)
			continue
		}
		switch m.Type {
		case "credentials":
			go connect(m.Ufrag, m.Pwd)
		case "candidate":
			line := strings.TrimPrefix(strings.TrimPrefix(m.Candidate, "a="), "candidate:")
			c, err := ice.UnmarshalCandidate(line)
			if err != nil {
				out.fail("UnmarshalCandidate", err)
				continue
			}
			if err := agent.AddRemoteCandidate(c); err != nil {
				out.fail("AddRemoteCandidate", err)
			}
		case "send":
			<-ready
			if _, err := conn.Write(m.Data); err != nil {
				out.fail("Write", err)
			}
		default:
			out.fail("command", fmt.Errorf("unknown type %q", m.Type))
		}
	}
}
