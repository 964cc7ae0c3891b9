# End-to-end check of the `qerr` tool (run by ctest):
#   cmake -DQERR=<path to qerr> -DSRC=<source dir> -DOUT=<scratch dir> -P cli_test.cmake
# It runs in the scratch directory, never in the source tree: an installed
# `qerr` has no repository around it, so every path is given.
file(MAKE_DIRECTORY ${OUT})
function(run_qerr expect_rc regex)
  execute_process(COMMAND ${QERR} ${ARGN} WORKING_DIRECTORY ${OUT}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL expect_rc)
    message(FATAL_ERROR "qerr ${ARGN}: exit ${rc}, expected ${expect_rc}\n${out}\n${err}")
  endif()
  if(NOT "${out}${err}" MATCHES "${regex}")
    message(FATAL_ERROR "qerr ${ARGN}: output does not match '${regex}':\n${out}\n${err}")
  endif()
  set(last_output "${out}${err}" PARENT_SCOPE)
endfunction()

run_qerr(0 "^qerr [0-9]+\\.[0-9]+\\.[0-9]+ \\(libqerr " --version)
run_qerr(0 "gptq: .*damp" methods)
# defaults in their shortest form, and where each method works
run_qerr(0 "let_lr +float +0\\.005 " methods omniquant)
run_qerr(0 "layer-wise, or block-wise with scope=block" methods omniquant)
run_qerr(0 "flatquant: [^\n]*\n  block-wise only" methods flatquant)
run_qerr(0 "gptq: [^\n]*\n  layer-wise: " methods gptq)
run_qerr(0 "group_size +int +-1 +-1, 1\\.\\." methods rtn)
run_qerr(0 "usage: qerr quantize" quantize --help)
run_qerr(0 "--threads T +threads for libqerr's loops and for OpenBLAS" ppl --help)
run_qerr(0 "--eval TOKENS .*formerly --tokens" ppl --help)
run_qerr(2 "unknown command" frobnicate)
run_qerr(2 "unknown option '--bogus'" ppl --bogus)
# no defaults that only exist in the repository: the model is asked for
run_qerr(2 "--model DIR is required" ppl)
run_qerr(2 "--model DIR is required" quantize --out ${OUT}/never.qerr)
run_qerr(2 "--model DIR is required" compare)
run_qerr(2 "--out FILE.qerr is required" quantize --model ${SRC}/data/tiny-llama)
run_qerr(2 "bad --plan" quantize --model ${SRC}/data/tiny-llama --plan nosuch:bits=4
         --out ${OUT}/never.qerr)
run_qerr(1 "cannot read the quantized model" ppl --quantized ${OUT}/absent.qerr)

if(NOT EXISTS ${SRC}/data/tiny-llama/model.safetensors)
  message(STATUS "data/tiny-llama is absent: model-level checks skipped")
  return()
endif()
set(tiny ${SRC}/data/tiny-llama)
# a model directory that ships no token files: the commands say what is
# missing instead of reading another model's tokens
set(bare ${OUT}/bare-model)
file(REMOVE_RECURSE ${bare})
file(MAKE_DIRECTORY ${bare})
file(CREATE_LINK ${tiny}/config.json ${bare}/config.json SYMBOLIC)
file(CREATE_LINK ${tiny}/model.safetensors ${bare}/model.safetensors SYMBOLIC)
run_qerr(2 "bare-model has no eval\\.u32; give --eval" ppl --model ${bare})
run_qerr(2 "bare-model has no calib\\.u32; give --calib" quantize --model ${bare}
         --out ${OUT}/never.qerr)
run_qerr(2 "has no calib\\.u32" compare --model ${bare})

set(q ${OUT}/cli_test_w4.qerr)
file(REMOVE ${q})
run_qerr(0 "wrote .*cli_test_w4.qerr" quantize --model ${tiny} --plan gptq:bits=4,group_size=128
         --override "model.layers.5.*=float" --nsamples 4 --ctx 64 --quiet --out ${q})
if(NOT last_output MATCHES "model.layers.0.mlp.down_proj.weight +256x768 +4.156")
  message(FATAL_ERROR "per-tensor table lacks down_proj of layer 0:\n${last_output}")
endif()
if(last_output MATCHES "model.layers.5.self_attn.q_proj.weight +256x256")
  message(FATAL_ERROR "the override kept layer 5 in float, yet it is listed:\n${last_output}")
endif()
if(NOT last_output MATCHES "calib +[^\n]*data/tiny-llama/calib\\.u32: 32768 tokens, 4 windows of 64")
  message(FATAL_ERROR "quantize --model alone did not calibrate on the model's calib.u32:\n${last_output}")
endif()
# --model alone: the evaluation tokens the model ships
run_qerr(0 "eval +[^\n]*data/tiny-llama/eval\\.u32" ppl --model ${tiny} --max-windows 2 --quiet)
string(REGEX MATCH "ppl +([0-9.]+)" _ "${last_output}")
set(float_ppl ${CMAKE_MATCH_1})
# the old spelling still works, with a notice
run_qerr(0 "--tokens is now called --eval" ppl --model ${tiny} --tokens ${tiny}/eval.u32
         --max-windows 2 --quiet)
# --threads bounds OpenBLAS too
run_qerr(0 "threads +1 for libqerr, 1 for OpenBLAS" ppl --model ${tiny} --max-windows 1
         --threads 1 --quiet)
# the container records its model: --quantized alone is enough
run_qerr(0 "35 tensors" ppl --quantized ${q} --max-windows 2 --quiet)
if(NOT last_output MATCHES "model +[^\n]*tiny-llama \\(recorded in the container\\)")
  message(FATAL_ERROR "ppl --quantized did not use the recorded model:\n${last_output}")
endif()
string(REGEX MATCH "ppl +([0-9.]+)" _ "${last_output}")
set(q_ppl ${CMAKE_MATCH_1})
if(q_ppl STREQUAL float_ppl)
  message(FATAL_ERROR "quantized perplexity equals float (${q_ppl}): weights not applied?")
endif()
message(STATUS "float ppl ${float_ppl}, W4 ppl ${q_ppl}")
# kill -9 in the middle (the library's test hook ends the process after
# layer 2 is recorded), then --resume: the same bytes as an uninterrupted run
set(cut ${OUT}/cli_test_cut.qerr)
file(REMOVE ${cut} ${cut}.partial ${cut}.partial.state)
set(qargs quantize --model ${tiny} --plan gptq:bits=4,group_size=128
    --override "model.layers.5.*=float" --nsamples 4 --ctx 64 --quiet --threads 2)
execute_process(COMMAND ${CMAKE_COMMAND} -E env QERR_TEST_EXIT_AT=2 ${QERR} ${qargs} --out ${cut}
                WORKING_DIRECTORY ${SRC} RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
if(NOT rc EQUAL 137 OR EXISTS ${cut} OR NOT EXISTS ${cut}.partial)
  message(FATAL_ERROR "killed quantize: exit ${rc}; the final name must not exist yet")
endif()
run_qerr(0 "wrote .*cli_test_cut.qerr" ${qargs} --out ${cut} --resume)
set(full ${OUT}/cli_test_full.qerr)
run_qerr(0 "wrote .*cli_test_full.qerr" ${qargs} --out ${full})
execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files ${cut} ${full} RESULT_VARIABLE same)
if(NOT same EQUAL 0)
  message(FATAL_ERROR "the resumed file differs from the uninterrupted one")
endif()
file(REMOVE ${cut} ${full})
run_qerr(0 "memory .* GiB.*about .* on this machine" quantize --model ${tiny} --dry-run
         --nsamples 4 --ctx 64)
run_qerr(1 "more than the memory budget" quantize --model ${tiny} --max-memory 1M
         --out ${OUT}/never.qerr)
run_qerr(2 "not a size" quantize --model ${tiny} --max-memory 12X --out ${OUT}/never.qerr)
run_qerr(0 "float.*rtn:bits=8" compare --model ${tiny} --plan "rtn:bits=8" --max-windows 2
         --nsamples 2 --ctx 32 --quiet)
# --format gptq adds scale_dtype=f16 to the plans that do not set it (the
# checkpoint then holds exactly the results: no warning); float32 scales,
# asked for, export with a warning
set(ck ${OUT}/cli_test_gptq)
file(REMOVE_RECURSE ${ck})
run_qerr(0 "plan +rtn:bits=4,group_size=128,symmetric=1,scale_dtype=f16; overrides model\\.layers\\.0\\.\\*=rtn:bits=4,symmetric=1,group_size=128,scale_dtype=f16\n.*wrote .*cli_test_gptq"
         quantize --model ${tiny} --plan rtn:bits=4,group_size=128,symmetric=1 --format gptq
         --override "model.layers.0.*=rtn:bits=4,symmetric=1,group_size=128" --nsamples 1
         --ctx 32 --quiet --out ${ck})
if("${last_output}" MATCHES "warning")
  message(FATAL_ERROR "quantize --format gptq warned:\n${last_output}")
endif()
file(REMOVE_RECURSE ${ck})
run_qerr(0 "wrote .*cli_test_gptq.*warning: .*scales are not float16 values.*scale_dtype=f16"
         quantize --model ${tiny} --plan rtn:bits=4,group_size=128,symmetric=1,scale_dtype=f32
         --format gptq --nsamples 1 --ctx 32 --quiet --out ${ck})
file(REMOVE_RECURSE ${ck})
# a model given as one GGUF file ships no token files: they are asked for
set(g ${OUT}/cli_test_f16.gguf)
run_qerr(0 "wrote .*cli_test_f16.gguf" quantize --model ${tiny} --format gguf --type F16
         --nsamples 1 --ctx 32 --quiet --out ${g})
run_qerr(2 "is a single file, which ships no token files; give --eval" ppl --model ${g})
run_qerr(0 "ppl +[0-9.]+ " ppl --model ${g} --eval ${tiny}/eval.u32 --max-windows 1 --quiet)
file(REMOVE ${g})
run_qerr(0 "--plans is now called --plan" compare --model ${tiny} --plans "rtn:bits=8"
         --max-windows 1 --nsamples 1 --seqlen 32 --quiet)

set(data ${SRC}/../shared/data)
if(NOT EXISTS ${data}/tinystories-656k/model.safetensors)
  message(STATUS "SKIP: ../shared/data is absent: checks on other models skipped")
  file(REMOVE ${q})
  return()
endif()
# another model's container is refused by name, not by a shape error
run_qerr(1 "was quantized from another model" ppl --quantized ${q}
         --model ${data}/tinystories-656k --max-windows 1 --quiet)
# same shapes, other values (the repository ships tiny-llama's weights
# rounded to BF16; ../shared has the float32 original): still refused
run_qerr(1 "was quantized from another model" ppl --quantized ${q}
         --model ${data}/tiny-llama --max-windows 1 --quiet)
file(REMOVE ${q})
# --model alone uses the model's own tokens: the float perplexity of the
# data README (tinystories-656k, eval.u32, ctx 256: 41.774039)
run_qerr(0 "ppl +41\\.77[34]" ppl --model ${data}/tinystories-656k --ctx 256 --quiet)
# tied embeddings counted once: 656K parameters, not 0.92M
set(q2 ${OUT}/cli_test_656k.qerr)
run_qerr(0 "0\\.66M parameters" quantize --model ${data}/tinystories-656k --plan rtn:bits=8
         --nsamples 2 --ctx 32 --quiet --out ${q2})
# ragged groups are applied with a visible notice
run_qerr(0 "warning: [^\n]*down_proj[^\n]*group_size=128 does not divide its 172 columns"
         quantize --model ${data}/stories260k --plan rtn:bits=4,group_size=128 --nsamples 2
         --ctx 32 --quiet --out ${q2})
file(REMOVE ${q2})

# ---- text in: --eval-text / --calib-text and qerr tokenize ----------------
# stories260k's eval.u32 is BOS + llama2.c's ids of each TinyStories line:
# the same stories as JSON Lines, tokenized by the CLI, give the same file
# and the README's perplexity (ctx 256: 5.606313)
find_program(PY3 python3)
if(NOT PY3)
  message(STATUS "SKIP: no python3 to write the JSON Lines fixture: text checks skipped")
  return()
endif()
set(jsonl ${OUT}/stories.jsonl)
execute_process(COMMAND ${PY3} -c
  "import json,sys\nfor l in open(sys.argv[1], encoding='utf-8'): print(json.dumps({'text': l.rstrip('\\n')}))"
  ${data}/text/tinystories_valid_sample.txt OUTPUT_FILE ${jsonl} RESULT_VARIABLE py_rc)
if(NOT py_rc EQUAL 0)
  message(FATAL_ERROR "could not write ${jsonl}")
endif()
set(tok260 ${data}/stories260k/tok512.bin)
run_qerr(0 "wrote .*stories260k.u32" tokenize --tokenizer ${tok260} --input ${jsonl}
         --out ${OUT}/stories260k.u32)
execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files ${OUT}/stories260k.u32
                ${data}/stories260k/eval.u32 RESULT_VARIABLE differ)
if(NOT differ EQUAL 0)
  message(FATAL_ERROR "qerr tokenize: the stories do not give stories260k/eval.u32")
endif()
run_qerr(0 "30310 bytes of text, 15526 tokens[^\n]*\nppl +5\\.60631[0-9] [^\n]*\nbits/byte +[0-9.]+ "
         ppl --model ${data}/stories260k --tokenizer ${tok260} --eval-text ${jsonl} --ctx 256
         --quiet)
run_qerr(0 "calib +[^\n]*stories.jsonl: 30310 bytes of text, 15526 tokens" quantize
         --model ${data}/stories260k --tokenizer ${tok260} --calib-text ${jsonl}
         --plan rtn:bits=8 --nsamples 2 --ctx 32 --quiet --out ${OUT}/cli_test_text.qerr)
file(REMOVE ${OUT}/cli_test_text.qerr)
# the model directory's own tokenizer.json; special tokens of the text
run_qerr(0 "\n +1  \"<\\|start_story\\|>\"  \\(special\\)\n" tokenize
         --model ${data}/tinystories-656k --text "Once upon a time")
# --raw: no BOS, and the marker is plain text (this vocabulary has it as a piece)
run_qerr(0 "15 bytes -> 1 tokens[^\n]*\n +214  \" <\\|start_story\\|>\"\n" tokenize
         --model ${data}/tinystories-656k --text "<|start_story|>" --raw)
# bad text input
run_qerr(2 "--eval TOKENS or --eval-text FILE, not both" ppl --model ${data}/stories260k
         --eval ${data}/stories260k/eval.u32 --eval-text ${jsonl})
file(WRITE ${OUT}/notext.jsonl "{\"text\": \"ok\"}\n{\"body\": \"no text\"}\n")
run_qerr(1 "line 2 has no \"text\" string" ppl --model ${data}/tinystories-656k
         --eval-text ${OUT}/notext.jsonl --quiet)
file(WRITE ${OUT}/empty.txt "")
run_qerr(1 "is empty" ppl --model ${data}/tinystories-656k --eval-text ${OUT}/empty.txt --quiet)
run_qerr(2 "has no tokenizer.json or tokenizer.bin[^\n]*\n[^\n]*give --tokenizer" ppl
         --model ${tiny} --eval-text ${jsonl} --quiet)
run_qerr(2 "give --text STRING or --input FILE" tokenize --model ${data}/tinystories-656k)
