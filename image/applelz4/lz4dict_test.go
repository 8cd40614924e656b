package applelz4

import "encoding/binary"

// compressWithDict is a small greedy LZ4 block encoder that may reference
// dict (the output preceding src), so tests can build streams whose matches
// cross block boundaries the way Apple's encoder does. It follows the LZ4
// block rules: the last 5 bytes are literals and no match starts in the
// last 12 bytes.
func compressWithDict(dict, src []byte) []byte {
	if len(dict) > WindowSize {
		dict = dict[len(dict)-WindowSize:]
	}
	all := append(append([]byte{}, dict...), src...)
	base := len(dict)
	table := map[uint32]int{}
	for i := 0; i+4 <= base; i++ {
		table[binary.LittleEndian.Uint32(all[i:])] = i
	}
	var out []byte
	anchor := base
	limit := len(all) - 12
	for i := base; i < limit; {
		key := binary.LittleEndian.Uint32(all[i:])
		cand, ok := table[key]
		table[key] = i
		if !ok || i-cand > 65535 || i-cand == 0 {
			i++
			continue
		}
		n := 4
		for i+n < len(all)-5 && all[cand+n] == all[i+n] {
			n++
		}
		out = appendSequence(out, all[anchor:i], i-cand, n)
		i += n
		anchor = i
	}
	return appendSequence(out, all[anchor:], 0, 0)
}

func appendSequence(out, lits []byte, offset, matchLen int) []byte {
	tok := len(out)
	out = append(out, 0)
	l := len(lits)
	if l >= 15 {
		out[tok] = 15 << 4
		out = appendLen(out, l-15)
	} else {
		out[tok] = byte(l << 4)
	}
	out = append(out, lits...)
	if matchLen == 0 {
		return out
	}
	out = append(out, byte(offset), byte(offset>>8))
	m := matchLen - 4
	if m >= 15 {
		out[tok] |= 15
		out = appendLen(out, m-15)
	} else {
		out[tok] |= byte(m)
	}
	return out
}

func appendLen(out []byte, n int) []byte {
	for n >= 255 {
		out = append(out, 255)
		n -= 255
	}
	return append(out, byte(n))
}

// frame assembles a stream from pieces: each piece is compressed with the
// preceding output as dictionary (crossDict), or stored.
type piece struct {
	data   []byte
	stored bool
}

func buildFrame(pieces []piece, crossDict bool) (frame, plain []byte) {
	for _, p := range pieces {
		if p.stored {
			frame = append(frame, magicStored[:]...)
			frame = binary.LittleEndian.AppendUint32(frame, uint32(len(p.data)))
			frame = append(frame, p.data...)
		} else {
			var dict []byte
			if crossDict {
				dict = plain
			}
			enc := compressWithDict(dict, p.data)
			frame = append(frame, magicCompressed[:]...)
			frame = binary.LittleEndian.AppendUint32(frame, uint32(len(p.data)))
			frame = binary.LittleEndian.AppendUint32(frame, uint32(len(enc)))
			frame = append(frame, enc...)
		}
		plain = append(plain, p.data...)
	}
	return append(frame, magicEnd[:]...), plain
}
