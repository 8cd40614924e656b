package sim

// killTagged would kill the guest's background processes; macOS has no
// /proc to find them by their environment, so on a Mac (where the sim
// runs only for development) a command's background children outlive the
// guest's power-off.
func killTagged(string) {}
