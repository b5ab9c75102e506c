#include "train/rows.h"
