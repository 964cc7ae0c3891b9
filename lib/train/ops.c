/* The block's pieces (RMSNorm, linear, RoPE, causal GQA attention, SwiGLU),
 * instantiated in float and double from ops_impl.h. */
#include "train.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <tgmath.h>

#include "real_def.h"
#include "ops_impl.h"
#define TR_DOUBLE
#include "real_def.h"
#include "ops_impl.h"
