"""Our llama.cpp engine vs raw llama-cpp-python on the same GGUF, in the same run.

    python bench/llamacpp.py [MODEL] [--prompt-tokens 128] [--new-tokens 128] [--repeats 3]

Same as `minicpm bench`; prints a table and writes bench/results/llamacpp.json."""

import argparse
import os
import sys

from minicpm.bench import add_arguments, main

if __name__ == "__main__":
    p = add_arguments(argparse.ArgumentParser(description=__doc__), "where the JSON goes",
                      os.path.join(os.path.dirname(__file__), "results", "llamacpp.json"))
    args = p.parse_args()
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    sys.exit(main(args))
