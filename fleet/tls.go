package fleet

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
)

func tlsPair(certPEM, keyPEM []byte) (tls.Certificate, error) {
	return tls.X509KeyPair(certPEM, keyPEM)
}

func loadCA(file string, data *[]byte) error {
	if len(*data) > 0 || file == "" {
		return nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("operator kubeconfig: reading the cluster CA: %w", err)
	}
	*data = b
	return nil
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}
