// Package train is the command line every generated network shares: it
// trains a compiled network on CIFAR (or synthetic) data with the paper's
// recipe, evaluates checkpoints, classifies images with them, and repeats
// trainings over seeds as the paper reports its results (the median of 5
// runs, with mean and standard deviation).
//
// A generated package's main calls Main with a Network describing it.
// Everything here is shape-generic: the network's constants come in the
// Network, its training step and inference through the Model interface.
//
// Subcommands: train, eval, predict and runs (Main's -h lists them; each
// one's -h lists its flags with their defaults). Bad input is a one-line
// error and exit status 1 (2 for a bad command line); an interrupted
// training saves a checkpoint and exits with 130.
//
// A training run writes, into its output directory, checkpoint.safetensors
// (weights, momentum and statistics, with the run's definition, the input
// mean and std and the class names in its metadata, so that -resume
// continues the run bit for bit and predict normalizes as training did),
// metrics.jsonl (one JSON object per logged point, see Point; errors in
// percent) and curves.png (test error and training loss against
// iterations, as in the paper's Fig. 1).
package train
