package router

import "net/url"

// RedactURL hides the credentials in a URL's user information, for everything that shows or logs a
// subscriber or sink URL: "user:pass@" becomes "user:xxxxx@", and a user alone (often a token)
// becomes "xxxxx@". A string that does not parse as a URL is returned as it is.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, hasPassword := u.User.Password(); !hasPassword {
		u.User = url.User("xxxxx")
		return u.String()
	}
	return u.Redacted()
}
