"""Our llama.cpp engine vs raw llama-cpp-python on the same GGUF, in the same run.

    python bench/llamacpp.py [MODEL] [--prompt-tokens 128] [--new-tokens 128] [--repeats 3]

Same as `minicpm bench`; prints a table and writes bench/results/llamacpp.json."""

import argparse
import os
import sys

from minicpm.bench import main

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model", nargs="?", default=None)
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--synthetic", default=None, choices=["minicpm-2b", "minicpm-1b"],
                   help="a random-weight MiniCPM GGUF of that shape instead of MODEL")
    p.add_argument("--qtype", default="q4_0", choices=["q4_0", "q8_0", "f16"])
    p.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results",
                                                  "llamacpp.json"))
    args = p.parse_args()
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    sys.exit(main(args))
