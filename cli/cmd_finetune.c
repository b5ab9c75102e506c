/* transmla finetune: flags named as the reference's training script
 * (Hugging Face TrainingArguments) names them. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/token_flags.h"
#include "dist/topology.h"
#include "io/base/error.h"
#include "io/base/interrupt.h"
#include "io/base/output_path.h"
#include "pipeline/stage_device.h"
#include "train/recompute_auto.h"
#include "train/trainer.h"

/* The flags given as text, checked and stored in c. */
static int finetune_numbers(TrainConfig *c, const char *lr, const char *wd, const char *warmup, const char *epochs,
                            const char *clip, const char *schedule, const char *train, const char *resume,
                            const char *distill_weight) {
    if (args_number("learning-rate", lr, 0, &c->opt.lr) || args_number("weight-decay", wd, 1, &c->opt.weight_decay) ||
        args_number("warmup-ratio", warmup, 1, &c->warmup_ratio) ||
        args_number("num-train-epochs", epochs, 0, &c->epochs) ||
        args_number("max-grad-norm", clip, 1, &c->opt.max_grad_norm) ||
        lr_schedule_parse(schedule, &c->opt.schedule) || train_what_parse(train, &c->what))
        return -1;
    if (c->warmup_ratio >= 1) return tm_fail("--warmup-ratio %s: expected a fraction below 1", warmup);
    if (args_one_of("resume", resume, "auto", "never")) return -1;
    c->resume = !strcmp(resume, "auto");
    if (args_number("distill-weight", distill_weight, 1, &c->distill_weight)) return -1;
    if (c->distill_weight > 1) return tm_fail("--distill-weight %s: expected a weight in [0, 1]", distill_weight);
    c->opt.beta1 = 0.9, c->opt.beta2 = 0.999, c->opt.eps = 1e-8;
    return 0;
}

/* --recompute, and --device: cpu, or cuda where a GPU is visible, with the modes the GPU step runs. */
static int finetune_engine(TrainConfig *c, const char *recompute, const char *device) {
    if (recompute_parse(recompute, &c->recompute)) return -1;
    int dev = device_parse(device);
    if (dev < 0 || stage_device_check(dev)) return -1;
    c->gpu = dev == PIPE_CUDA;
    if (c->gpu && (c->recompute == 0 || c->distill_from))
        return tm_fail("--device cuda: fine-tuning on the GPU recomputes layers (--recompute auto or on) and takes "
                       "no --distill-from");
    return 0;
}

static int finetune_args(int argc, char **argv, TrainConfig *c) {
    const char *token_dtype = "u16", *text_field = NULL, *lr = "2e-5", *wd = "0.01", *warmup = "0.03";
    const char *schedule = "cosine", *epochs = "1", *clip = "1.0", *resume = "auto", *train = "all";
    const char *distill_weight = "1", *recompute = "auto", *device = "cpu";
    int max_steps = 0, save_steps = 0, seed = 42;
    TokenFlags flags = {.split = "train"};
    *c = (TrainConfig){.seq_len = 2048, .batch = 1, .grad_accum = 1, .stages = 1, .log_every = 1,
                       .chat_template = "auto"};
    const ArgSpec specs[] = {
        {"model-path", ARG_STR, &c->model_path, "DIR", "model folder: converted (deepseek_v3) or an original GQA model", 1},
        {"save-path", ARG_STR, &c->save_path, "DIR",
         "output folder: checkpoints, metrics.jsonl and, at the end, the trained model", 1},
        {"data", ARG_STR, &c->data, "FILE", "chat data: SmolTalk-style JSONL or JSONL.gz ({\"messages\": [...]})", 0},
        {"chat-template", ARG_STR, &c->chat_template, "NAME",
         "chatml|llama3|llama2|mistral|auto (default auto: from tokenizer_config.json)", 0},
        {"tokens", ARG_STR, &flags.tokens, "FILE", "continued pretraining on token ids: HDF5 token set or raw ids", 0},
        {"token-dtype", ARG_STR, &token_dtype, "u16|u32", "width of raw ids in --tokens (default u16)", 0},
        {"dataset", ARG_STR, &flags.dataset, "NAME", "continued pretraining on a text dataset (wikitext2|ptb|c4|text|jsonl)", 0},
        {"data-path", ARG_STR, &flags.data_path, "PATH", "folder or file of the --dataset", 0},
        {"split", ARG_STR, &flags.split, "S", "split of the --dataset (default train)", 0},
        {"text-field", ARG_STR, &text_field, "NAME", "field holding the text in jsonl datasets (default text)", 0},
        {"seq-len", ARG_SEQLEN, &c->seq_len, "L", "tokens per training row (default 2048)", 0},
        {"batch-size", ARG_POS_INT, &c->batch, "B", "rows per micro-batch per replica (default 1)", 0},
        {"gradient-accumulation-steps", ARG_POS_INT, &c->grad_accum, "K", "micro-batches per step per replica (default 1)", 0},
        {"max-steps", ARG_INT, &max_steps, "N", "optimizer steps (default: --num-train-epochs)", 0},
        {"num-train-epochs", ARG_STR, &epochs, "E", "epochs when --max-steps is not given (default 1)", 0},
        {"learning-rate", ARG_STR, &lr, "LR", "peak learning rate (default 2e-5)", 0},
        {"weight-decay", ARG_STR, &wd, "W", "AdamW decoupled weight decay, not on norms and biases (default 0.01)", 0},
        {"warmup-ratio", ARG_STR, &warmup, "R", "linear warmup over this fraction of the steps (default 0.03)", 0},
        {"lr-scheduler-type", ARG_STR, &schedule, "S", "cosine|linear|constant_with_warmup (default cosine)", 0},
        {"max-grad-norm", ARG_STR, &clip, "X", "clip gradients to this global norm; 0: no clipping (default 1.0)", 0},
        {"save-steps", ARG_INT, &save_steps, "S", "checkpoint every S steps (default 0: at the end and when stopped)", 0},
        {"save-total-limit", ARG_INT, &c->save_total_limit, "K", "keep the newest K checkpoints (default 0: all)", 0},
        {"resume", ARG_STR, &resume, "auto|never", "auto: continue from the newest checkpoint in --save-path (default)", 0},
        {"train", ARG_STR, &train, "WHAT",
         "all|attention|attention+norms: what is trained; the rest is frozen and has no optimizer state (default all)", 0},
        {"distill-from", ARG_STR, &c->distill_from, "DIR",
         "teacher model folder (e.g. the original the model was converted from): train toward its next-token "
         "distribution (KL) as well as the data", 0},
        {"distill-weight", ARG_STR, &distill_weight, "A",
         "with --distill-from: loss = A KL(teacher || student) + (1 - A) NLL, A in [0, 1] (default 1)", 0},
        {"recompute", ARG_STR, &recompute, "auto|on|off", "on: recompute each layer from its input in the backward "
         "pass; off: keep every layer's activations of each micro-batch in flight (a quarter fewer layer FLOPs; 1F1B, "
         "stage s of S holding up to S - s micro-batches); auto: off where each node's memory allows it (MemAvailable, "
         "cgroup limits, SLURM_MEM_PER_NODE), else on (default auto)", 0},
        {"device", ARG_STR, &device, "cpu|cuda", "cuda: each rank's layers, head and loss on its GPU (local rank mod "
         "count), forward and backward, recomputing, no --distill-from; not yet run on a GPU (default cpu)", 0},
        {"gpu-fp32", ARG_FLAG, &c->gpu_fp32, "", "with --device cuda: fp32 GEMMs instead of bf16 inputs", 0},
        {"seed", ARG_INT, &seed, "S", "data shuffling seed (default 42)", 0},
        {"stages", ARG_POS_INT, &c->stages, "S", "pipeline stages; MPI ranks / S data-parallel replicas (default 1)", 0},
        {"logging-steps", ARG_POS_INT, &c->log_every, "N", "print a progress line every N steps (default 1)", 0},
        {"quiet", ARG_FLAG, &c->quiet, "", "no progress lines", 0},
    };
    const char *usage =
        "usage: transmla finetune --model-path DIR --save-path DIR (--data FILE.jsonl | --tokens FILE | --dataset NAME\n"
        "       --data-path PATH) [--seq-len L] [--batch-size B] [--gradient-accumulation-steps K] [--max-steps N]\n\n"
        "Fine-tunes a converted model with AdamW (fp32 master weights and moments), checkpointing to HDF5 so that a\n"
        "stopped or killed run continues where it was. Chat data carries loss on the assistant's tokens only.";
    TmTokenDType dt;
    int present;
    if (args_parse(argc, argv, specs, sizeof specs / sizeof specs[0], usage) || token_dtype_parse(token_dtype, &dt) ||
        token_flags_resolve("", &flags, text_field, dt, &c->tokens, &present))
        return -1;
    c->has_tokens = present;
    static char save_path[4096]; /* checked before any work: never the model or the data it reads */
    const char *inputs[] = {c->model_path, c->data, flags.tokens, flags.data_path, c->distill_from};
    if (output_path_normalize("--save-path", c->save_path, save_path, sizeof save_path) ||
        output_path_check("--save-path", save_path, OUT_FOLDER, inputs, 5))
        return -1;
    c->save_path = save_path;
    if (!!c->data + present != 1)
        return tm_fail("give exactly one of --data FILE.jsonl (chat) and --tokens/--dataset (continued pretraining)");
    if (finetune_numbers(c, lr, wd, warmup, epochs, clip, schedule, train, resume, distill_weight) ||
        finetune_engine(c, recompute, device))
        return -1;
    c->max_steps = max_steps, c->save_steps = save_steps;
    c->seed = (uint64_t)(unsigned)seed;
    c->tokens.warn = 1;
    return 0;
}

int cmd_finetune(int argc, char **argv) {
    dist_init(&argc, &argv);
    tm_interrupt_install(); /* after MPI_Init, which may install handlers of its own */
    TrainConfig c;
    int rank, rc = finetune_args(argc, argv, &c) ? -1 : trainer_run(&c) ? -1 : 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rc && rank == 0) cli_fail();
    dist_finalize();
    return rc ? 1 : 0;
}
