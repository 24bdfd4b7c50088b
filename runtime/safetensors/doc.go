// Package safetensors reads and writes weights and checkpoints in the
// safetensors format, so that a generated package and other tools (the
// safetensors library of PyTorch, for one) can exchange them.
//
// A file is an 8-byte little-endian header length N, N bytes of a JSON
// object mapping each tensor name to {"dtype", "shape", "data_offsets":
// [begin, end]} (offsets relative to the data that follows the header),
// with an optional "__metadata__" object of strings, and then the tensors'
// little-endian bytes, packed with no gaps. Write pads the header with
// spaces to a multiple of 8 bytes, as the reference implementation does,
// so the data starts 8-byte aligned.
//
// Read validates everything it is given (a checkpoint may be truncated or
// come from elsewhere) and returns an *Error that says where and what
// instead of panicking. Write emits the same bytes for the same input (the
// metadata keys sorted, the tensors in the order given) and streams the
// tensor data: a tensor made by F32 is encoded in small chunks as it is
// written, so saving a large checkpoint does not copy it. WriteFile
// replaces a file atomically, so an interrupted save leaves the previous
// checkpoint intact.
package safetensors
