package runas

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"strings"
)

// Identity is a resolved user: who a command runs as. Resolve it once, when a
// configuration is validated, with LookupUser.
type Identity struct {
	// Name is the login name (USER and LOGNAME of the command).
	Name string
	UID  uint32
	GID  uint32
	// Groups are the supplementary groups; the command gets exactly these.
	Groups []uint32
	// Home is the home directory (HOME, and the default working directory).
	Home string
}

// LookupUser resolves a login name (or a numeric uid) through os/user: uid,
// primary gid, every group the user is a member of, and the home directory.
func LookupUser(name string) (Identity, error) {
	if name == "" {
		return Identity{}, errors.New("empty user name")
	}
	var u *user.User
	var err error
	if isDigits(name) {
		u, err = user.LookupId(name)
	} else {
		u, err = user.Lookup(name)
	}
	if err != nil {
		var unknown user.UnknownUserError
		var unknownID user.UnknownUserIdError
		if errors.As(err, &unknown) || errors.As(err, &unknownID) {
			return Identity{}, fmt.Errorf("unknown user %q", name)
		}
		return Identity{}, fmt.Errorf("look up user %q: %w", name, err)
	}
	uid, err := parseID(u.Uid)
	if err != nil {
		return Identity{}, fmt.Errorf("user %q: uid: %w", name, err)
	}
	gid, err := parseID(u.Gid)
	if err != nil {
		return Identity{}, fmt.Errorf("user %q: gid: %w", name, err)
	}
	gids, err := u.GroupIds()
	if err != nil {
		return Identity{}, fmt.Errorf("user %q: groups: %w", name, err)
	}
	id := Identity{Name: u.Username, UID: uid, GID: gid, Home: u.HomeDir}
	seen := map[uint32]bool{}
	for _, g := range gids {
		n, err := parseID(g)
		if err != nil {
			return Identity{}, fmt.Errorf("user %q: group %q: %w", name, g, err)
		}
		if !seen[n] {
			seen[n] = true
			id.Groups = append(id.Groups, n)
		}
	}
	if !seen[gid] {
		id.Groups = append([]uint32{gid}, id.Groups...)
	}
	return id, nil
}

// LookupGroup resolves a group name (or a numeric gid) to its gid.
func LookupGroup(name string) (uint32, error) {
	if name == "" {
		return 0, errors.New("empty group name")
	}
	var g *user.Group
	var err error
	if isDigits(name) {
		g, err = user.LookupGroupId(name)
	} else {
		g, err = user.LookupGroup(name)
	}
	if err != nil {
		var unknown user.UnknownGroupError
		var unknownID user.UnknownGroupIdError
		if errors.As(err, &unknown) || errors.As(err, &unknownID) {
			return 0, fmt.Errorf("unknown group %q", name)
		}
		return 0, fmt.Errorf("look up group %q: %w", name, err)
	}
	return parseID(g.Gid)
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("not a numeric id: %q", s)
	}
	return uint32(n), nil
}
