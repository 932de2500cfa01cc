package main

import (
	"flag"
	"fmt"

	"github.com/picockpit/picockpit-client/agent/contract"
)

var aclCmd = &subcommand{
	name:    "acl",
	summary: "print a least-privilege Mosquitto ACL for this device (and a frontend user)",
	flags: func(fs *flag.FlagSet) func(*cli, []string) int {
		cf := newConfigFlags(fs, false)
		frontend := fs.String("frontend-user", "dashboard", "broker `user` of the frontends (empty: none)")
		pattern := fs.Bool("pattern", false, "write the device rules as patterns for every device (user name = device id)")
		return func(c *cli, args []string) int {
			if len(args) > 0 {
				return c.usageError("unexpected argument %q", args[0])
			}
			cfg, dev, ok := configAndDevice(cf.options(c), c.stderr)
			if !ok {
				return 1
			}
			user := cfg.Broker.Username
			if user == "" {
				user = dev.ID
			}
			fmt.Fprint(c.stdout, contract.MosquittoACL(cfg.Topics.Prefix, dev.ID, user, *frontend, *pattern))
			return 0
		}
	},
}
