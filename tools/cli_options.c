/* The options of every `qerr` command, defined once. A command lists the
 * names it takes; the parser, the help and the aliases come from here, so a
 * name means one thing everywhere. New options go into this table. */
#include "cli.h"

#include <string.h>

static const cli_optdef options[] = {
    /* what is read */
    {"model", NULL, "DIR", "model directory: config.json + model.safetensors (required)", NULL},
    {"quantized", NULL, "FILE.qerr", "quantized tensors (a container written by qerr quantize)",
     NULL},
    {"calib", NULL, "TOKENS",
     "calibration tokens, little-endian uint32 (default: calib.u32 in the model directory)",
     NULL},
    {"eval", "tokens", "TOKENS",
     "evaluation tokens, little-endian uint32 (default: eval.u32 in the model directory)", NULL},
    {"calib-text", NULL, "FILE",
     "calibration text instead of --calib: UTF-8, or JSON Lines with a \"text\" field, "
     "tokenized with the model's tokenizer (BOS/EOS by its rules, per JSON line)",
     NULL},
    {"eval-text", NULL, "FILE",
     "evaluation text instead of --eval: UTF-8, or JSON Lines with a \"text\" field, "
     "tokenized with the model's tokenizer (BOS/EOS by its rules, per JSON line)",
     NULL},
    {"tokenizer", NULL, "PATH",
     "tokenizer for text: a tokenizer.json, a llama2.c tokenizer.bin, or a directory "
     "(default: the model directory's tokenizer.json or tokenizer.bin)",
     NULL},
    {"text", NULL, "STRING", "text to tokenize", NULL},
    {"input", NULL, "FILE", "text file to tokenize: UTF-8, or JSON Lines with a \"text\" field",
     NULL},
    {"raw", NULL, NULL,
     "no BOS/EOS, and special tokens written in the text are read as plain text", NULL},
    /* what is done */
    {"plan", "plans", "SPEC", "quantization plan of every linear layer (see qerr methods)",
     "gptq:bits=4,group_size=128"},
    {"override", NULL, "'PAT=SPEC;...'",
     "per-tensor plans by glob over names, first match wins; SPEC may be 'float'", ""},
    {"nsamples", NULL, "N", "calibration windows", "128"},
    {"ctx", NULL, "N",
     "tokens per window, for perplexity and calibration (non-overlapping; token 0 of a "
     "perplexity window is not scored)",
     "256"},
    {"calib-ctx", "seqlen", "N", "tokens per calibration window, if not --ctx", NULL},
    {"max-windows", NULL, "N", "score at most N perplexity windows, 0 = all", "0"},
    {"seed", NULL, "S", "seed for drawing the calibration windows and for the methods", "0"},
    {"gguf", NULL, "'FILE;FILE;...'",
     "also measure these GGUF files (libqerr's or llama.cpp's) on the same windows", ""},
    /* where the result goes, and in what form */
    {"out", NULL, "FILE", "where to write the result (required)", NULL},
    {"format", NULL, "qerr|gguf|gptq|gptq_v2",
     "what --out is: a .qerr container, a GGUF file for llama.cpp, or a GPTQ checkpoint "
     "directory for transformers, vLLM, ExLlamaV2 (gptq: zero points stored minus one, "
     "gptq_v2: as is)",
     "qerr"},
    {"type", NULL, "TYPE",
     "GGUF file type: F32, F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_M, Q4_K_M, Q5_K_M, "
     "Q6_K, ... (see docs/gguf.md)",
     "Q4_K_M"},
    {"mix", NULL, "ftype|pure|layers",
     "GGUF: llama-quantize's per-tensor types, one type for all, or the block linears only",
     "ftype"},
    {"ggml-opts", NULL, "KEYS", "GGUF: extra keys of the ggml method, e.g. solver=gptq", ""},
    /* how it runs */
    {"threads", NULL, "T",
     "threads for libqerr's loops and for OpenBLAS (openblas_set_num_threads), 0 = all CPUs "
     "(OpenBLAS then follows OPENBLAS_NUM_THREADS)",
     "0"},
    {"quiet", NULL, NULL, "no progress bar", NULL},
    {"resume", NULL, NULL,
     "continue an interrupted quantization of the same command from FILE.qerr.partial", NULL},
    {"max-memory", NULL, "SIZE",
     "memory budget (e.g. 12G): calibration activations beyond it go to a file in $TMPDIR; "
     "refuse before any work if even that does not fit",
     ""},
    {"dry-run", NULL, NULL, "print the memory and time the run needs, and stop", NULL},
};

const cli_optdef *cli_optdef_find(const char *name) {
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
        if (strcmp(options[i].name, name) == 0 ||
            (options[i].alias && strcmp(options[i].alias, name) == 0))
            return &options[i];
    return NULL;
}
