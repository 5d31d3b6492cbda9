package daemon

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"
)

// qgaFreezer freezes a guest's filesystems through the qemu guest agent
// (the chardev socket of the VM's org.qemu.guest_agent.0 channel):
// guest-sync-delimited to find the start of a fresh answer, then
// guest-fsfreeze-freeze before the cut and guest-fsfreeze-thaw after it.
// The agent is the guest's and may be gone or hung: every exchange has the
// caller's deadline, and the thaw is sent on a new connection if the
// freeze's one broke.
type qgaFreezer struct {
	socket string
	conn   net.Conn
	rd     *bufio.Reader
}

func (q *qgaFreezer) String() string { return "guest agent " + q.socket }

func (q *qgaFreezer) freeze(deadline time.Time) error {
	if err := q.connect(deadline); err != nil {
		return err
	}
	var frozen int
	if err := q.execute("guest-fsfreeze-freeze", &frozen); err != nil {
		return err
	}
	if frozen == 0 {
		return errors.New("the guest agent froze no filesystem")
	}
	return nil
}

func (q *qgaFreezer) thaw(deadline time.Time) error {
	if q.conn == nil {
		if err := q.connect(deadline); err != nil {
			return err
		}
	}
	defer q.close()
	_ = q.conn.SetDeadline(deadline)
	var thawed int
	return q.execute("guest-fsfreeze-thaw", &thawed)
}

func (q *qgaFreezer) close() {
	if q.conn != nil {
		q.conn.Close()
		q.conn, q.rd = nil, nil
	}
}

// connect dials the agent and synchronises with it: a 0xFF flushes a
// half-read command in the agent's parser, and guest-sync-delimited's
// answer, after a 0xFF of the agent's, is the first byte of a fresh reply
// (anything before it answered someone else).
func (q *qgaFreezer) connect(deadline time.Time) error {
	q.close()
	conn, err := net.DialTimeout("unix", q.socket, time.Until(deadline))
	if err != nil {
		return fmt.Errorf("guest agent: %w", err)
	}
	_ = conn.SetDeadline(deadline)
	q.conn, q.rd = conn, bufio.NewReader(conn)
	id := rand.Int64N(1 << 53)
	if _, err := conn.Write([]byte{0xff}); err != nil {
		q.close()
		return fmt.Errorf("guest agent: %w", err)
	}
	if err := q.send("guest-sync-delimited", map[string]any{"id": id}); err != nil {
		q.close()
		return err
	}
	for {
		if _, err := q.rd.ReadBytes(0xff); err != nil {
			q.close()
			return fmt.Errorf("guest agent: no answer to guest-sync-delimited: %w", err)
		}
		var got int64
		if err := q.reply(&got); err == nil && got == id {
			return nil
		}
	}
}

func (q *qgaFreezer) send(command string, args any) error {
	msg := map[string]any{"execute": command}
	if args != nil {
		msg["arguments"] = args
	}
	b, _ := json.Marshal(msg)
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("guest agent %s: %w", command, err)
	}
	return nil
}

// execute sends command and reads its reply into result.
func (q *qgaFreezer) execute(command string, result any) error {
	if err := q.send(command, nil); err != nil {
		return err
	}
	if err := q.reply(result); err != nil {
		return fmt.Errorf("guest agent %s: %w", command, err)
	}
	return nil
}

// reply reads one JSON reply: {"return": …} into result, or {"error": …}.
func (q *qgaFreezer) reply(result any) error {
	line, err := q.rd.ReadBytes('\n')
	if err != nil {
		return err
	}
	var r struct {
		Return json.RawMessage `json:"return"`
		Error  *struct {
			Class string `json:"class"`
			Desc  string `json:"desc"`
		} `json:"error"`
	}
	if err := json.Unmarshal(bytes.TrimLeft(line, "\xff"), &r); err != nil {
		return fmt.Errorf("unreadable reply %q: %w", line, err)
	}
	if r.Error != nil {
		return fmt.Errorf("%s: %s", r.Error.Class, r.Error.Desc)
	}
	return json.Unmarshal(r.Return, result)
}
