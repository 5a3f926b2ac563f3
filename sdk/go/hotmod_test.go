package hotmod

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func nop([]byte, *Output) error { return nil }

func TestCheckRefusesWhatCannotBecomeADescriptor(t *testing.T) {
	many := make([]Method, MaxMethods+1)
	for i := range many {
		many[i] = Method{Name: fmt.Sprint("m", i), Func: nop}
	}
	for _, c := range []struct {
		p    Plugin
		want string
	}{
		{Plugin{Name: "a\x00b", Version: "1.0.0"}, "expected a name without NUL bytes"},
		{Plugin{Name: "p", Version: "1.0.0", Methods: []Method{{Name: "m", Signature: "s\x00"}}}, "method signature without NUL"},
		{Plugin{Name: "p", Version: "1.0.0", Dependencies: []Dependency{{Name: "d", Range: "^1\x00"}}}, "dependency range"},
		{Plugin{Name: "p", Version: "1.0.0", Methods: many}, fmt.Sprintf("expected at most %d methods, found %d", MaxMethods, MaxMethods+1)},
		{Plugin{Name: "p", Version: "1.0.0", Methods: []Method{{Name: "m"}}}, `method "m": expected exactly one of Func and Bytes, found neither`},
		{Plugin{Name: "p", Version: "1.0.0", Methods: []Method{{Name: "m", Func: nop,
			Bytes: func([]byte) ([]byte, error) { return nil, nil }}}}, "found both"},
	} {
		err := check(&c.p)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("check(%+v) = %v, want an error containing %q", c.p.Name, err, c.want)
		}
	}
	ok := Plugin{Name: "p", Version: "1.0.0", Methods: many[:MaxMethods]}
	if err := check(&ok); err != nil {
		t.Errorf("check of %d methods: %v", MaxMethods, err)
	}
}

func TestStatusOfErrors(t *testing.T) {
	if got := status(errors.New("x")); got != 1 {
		t.Errorf("plain error: status %d, want 1 (HOTMOD_PLUGIN_ERROR)", got)
	}
	wrapped := fmt.Errorf("while parsing: %w", InvalidInput("bad %d", 7))
	if got := status(wrapped); got != 2 {
		t.Errorf("wrapped InvalidInput: status %d, want 2 (HOTMOD_PLUGIN_INVALID_INPUT)", got)
	}
	if wrapped.Error() != "while parsing: bad 7" {
		t.Errorf("message %q", wrapped.Error())
	}
}

func TestPanicMessageNamesTheValueAndThePlace(t *testing.T) {
	var msg string
	func() {
		defer func() { msg = panicMessage("method 'x'", recover()) }()
		var m map[string]int
		m["boom"] = 1 // a runtime error: assignment to a nil map
	}()
	for _, want := range []string{"method 'x' panicked: ", "assignment to entry in nil map", "(at hotmod.dev/sdk/go.TestPanicMessageNamesTheValueAndThePlace.func1", "hotmod_test.go:"} {
		if !strings.Contains(msg, want) {
			t.Errorf("panic message %q lacks %q", msg, want)
		}
	}
}
