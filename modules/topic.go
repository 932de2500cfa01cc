package modules

import "strings"

// MatchTopic reports whether topic matches the MQTT filter (with + and #).
func MatchTopic(filter, topic string) bool {
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		if !fmore || !tmore {
			if !fmore && !tmore {
				return true
			}
			// "a/#" matches "a" too.
			return fmore && frest == "#"
		}
		filter, topic = frest, trest
	}
}
