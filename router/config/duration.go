package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// parseISODuration reads an ISO 8601 duration as Knative's DeliverySpec uses them: PT0.2S, PT1M,
// P1DT2H. Years and months have no fixed length and are refused; weeks and days are 7 and 1 × 24h.
func parseISODuration(s string) (time.Duration, error) {
	bad := func(why string) (time.Duration, error) {
		return 0, fmt.Errorf("%q is not an ISO 8601 duration (%s), e.g. PT0.2S or PT1M30S", s, why)
	}
	rest, ok := strings.CutPrefix(s, "P")
	if !ok {
		return bad("it must start with P")
	}
	if rest == "" || rest == "T" {
		return bad("it names no amount")
	}
	var total float64
	inTime := false
	for rest != "" {
		if rest[0] == 'T' {
			if inTime {
				return bad("T appears twice")
			}
			inTime = true
			rest = rest[1:]
			if rest == "" {
				return bad("nothing follows T")
			}
			continue
		}
		end := strings.IndexAny(rest, "YMWDHS")
		if end <= 0 {
			return bad("a number must be followed by one of W, D, H, M, S")
		}
		n, err := strconv.ParseFloat(strings.Replace(rest[:end], ",", ".", 1), 64)
		if err != nil || n < 0 {
			return bad("bad number " + rest[:end])
		}
		unit := rest[end]
		rest = rest[end+1:]
		switch {
		case unit == 'Y':
			return bad("years have no fixed length")
		case unit == 'M' && !inTime:
			return bad("months have no fixed length; minutes go after T: PT1M")
		case unit == 'W' && !inTime:
			total += n * 7 * 24 * 3600
		case unit == 'D' && !inTime:
			total += n * 24 * 3600
		case unit == 'H' && inTime:
			total += n * 3600
		case unit == 'M' && inTime:
			total += n * 60
		case unit == 'S' && inTime:
			total += n
		default:
			return bad(fmt.Sprintf("unit %c is not allowed there", unit))
		}
	}
	if total > float64(1<<63-1)/1e9 {
		return bad("too long")
	}
	return time.Duration(total * float64(time.Second)), nil
}
