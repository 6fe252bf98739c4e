// Package configs defines the configuration of the flotilla broker binary:
// its schema, its defaults, how it is read from a YAML file and overridden
// from the command line, and the checks it must pass before a node starts.
//
// A configuration is assembled in layers, each overriding the one before:
//
//  1. Default, which gives every field a usable value;
//  2. the YAML file named by --config, read by Load, in which every key is
//     optional but unknown keys are refused, so a misspelt setting fails
//     loudly instead of silently keeping its default;
//  3. the command-line flags that were actually given (FromArgs);
//  4. Validate, which fills the fields that default to other fields
//     (kafka.advertise from kafka.listen, and peers for a one-node cluster)
//     and reports every invalid field at once.
//
// Errors name the offending field by its YAML path, for example
//
//	config configs/x.yaml: peers[1].id: duplicate id 2
//
// so that the message can be shown to a person unchanged.
//
// Relative paths such as data_dir are relative to the working directory of
// the process, not to the configuration file.
//
// The files single.yaml and cluster/node{1,2,3}.yaml in this directory are
// ready-to-run examples for a one-node and a three-node cluster.
package configs
