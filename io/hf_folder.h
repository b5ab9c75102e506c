/* The parts of a Hugging Face model folder that are copied, not computed:
 * tokenizer files and config.json (convert's and finetune's exports). */
#ifndef TM_IO_HF_FOLDER_H
#define TM_IO_HF_FOLDER_H

/* Copy src_dir's tokenizer files (those present), and config.json too when
 * with_config (last: a folder without it is not a model), into dir. */
int hf_copy_tokenizer_files(const char *dir, const char *src_dir, int with_config);

#endif
