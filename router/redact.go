package router

import (
	"net/url"
	"strings"
)

// RedactURL hides the credentials a subscriber or sink URL may carry, for everything that shows or
// logs one: "user:pass@" becomes "user:xxxxx@", a user alone (often a token) "xxxxx@", and every
// query parameter's value "xxxxx" (`?token=...`, `?sig=...` and `?code=...` carry secrets as often
// as not, and a reader of the admin API must not learn them; the names stay, to tell URLs apart).
// A string that does not parse as a URL is returned as it is.
func RedactURL(raw string) string {
	if !strings.ContainsAny(raw, "@?") {
		return raw // the common case, without parsing
	}
	u, err := url.Parse(raw)
	if err != nil || (u.User == nil && u.RawQuery == "") {
		return raw
	}
	if u.User != nil {
		if p, hasPassword := u.User.Password(); hasPassword && p != "" {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		} else {
			u.User = url.User("xxxxx")
		}
	}
	if u.RawQuery != "" {
		u.RawQuery = redactQuery(u.RawQuery)
	}
	return u.String()
}

// redactQuery replaces each value of a raw query with xxxxx, keeping the names and their order.
func redactQuery(raw string) string {
	var b strings.Builder
	for i, pair := range strings.Split(raw, "&") {
		if i > 0 {
			b.WriteByte('&')
		}
		name, _, hasValue := strings.Cut(pair, "=")
		b.WriteString(name)
		if hasValue {
			b.WriteString("=xxxxx")
		}
	}
	return b.String()
}
