// pgzip: stdin → gzip → stdout with github.com/klauspost/pgzip at its defaults (1 MB blocks,
// GOMAXPROCS goroutines), the compressor skopeo, buildah and umoci use. Built by bench/run.sh when
// Debian's golang-go and golang-github-klauspost-pgzip-dev are installed; a peer row only.
package main

import (
	"bufio"
	"flag"
	"io"
	"os"

	"github.com/klauspost/pgzip"
)

func main() {
	level := flag.Int("l", -1, "level (-1 = the default)")
	flag.Parse()
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	w, err := pgzip.NewWriterLevel(out, *level)
	if err != nil {
		panic(err)
	}
	if _, err := io.Copy(w, bufio.NewReaderSize(os.Stdin, 1<<20)); err != nil {
		panic(err)
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	if err := out.Flush(); err != nil {
		panic(err)
	}
}
