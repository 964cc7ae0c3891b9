/* Run-time state of weight-activation quantized layers (deployed.c): built
 * from a block's results, run by the model forward through
 * qerr__deployed_rt_ops. */
#ifndef QERR_PIPELINE_DEPLOYED_H
#define QERR_PIPELINE_DEPLOYED_H

#include "../llama/model.h"
#include "../methods/flatquant/flatquant.h"

/* Build the run-time state of layer l from its seven results r[QERR_LIN_*]
 * (any may be NULL): *out stays NULL when they carry no online transform. */
int qerr__layer_rt_from_results(const qerr_model_config *cfg, const qerr_result *const r[7],
                                qerr_layer_rt **out);
/* The deployed layer on X in place, with its (dequantized) linear weights w. */
int qerr__layer_rt_forward(const qerr_model_config *cfg, const qerr_layer_rt *rt,
                           const qerr_layer_weights *w, float *X, int64_t nwin, int64_t T);
void qerr__layer_rt_free(qerr_layer_rt *rt);
/* What qerr_model_apply sets as the model's rt_ops. */
extern const qerr_layer_rt_ops qerr__deployed_rt_ops;

#endif /* QERR_PIPELINE_DEPLOYED_H */
