package main

// The VM drivers compiled into vz-node register themselves by name.
import _ "github.com/vzfleet/vzfleet/node/vm/sim"
