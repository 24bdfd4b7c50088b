// Package data supplies the training and evaluation images of a generated
// package: datasets in memory, the CIFAR recipe of augmentation and
// normalization, and a batch pipeline that prepares batches ahead of the
// training step on background goroutines.
//
// A Set holds N images of C x H x W bytes in CHW order, as the CIFAR
// binaries store them, and converts them to float32 only when a batch is
// made, so CIFAR-10 costs 150 MB rather than 600 MB. Load reads the CIFAR-10
// and CIFAR-100 binary releases (the .tar.gz as distributed or a folder of
// extracted files), Download fetches and verifies those archives, and
// Synthetic generates a learnable dataset of oriented gratings for tests and
// demonstrations without any download. Malformed files are errors that name
// the file and say what is wrong; no input makes the readers panic.
//
// A Loader's batch k is a pure function of the set, the options and k: the
// epoch permutation and each image's crop offset and flip are derived from
// the seed by hashing, not drawn from a stream, so a run resumed at batch k
// sees the same batches bit for bit as one that never stopped, whatever
// the number of worker goroutines.
package data
