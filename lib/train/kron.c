/* Kronecker transform forward/backward, instantiated in float and double
 * from kron_impl.h. */
#include "train.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "real_def.h"
#include "kron_impl.h"
#define TR_DOUBLE
#include "real_def.h"
#include "kron_impl.h"
