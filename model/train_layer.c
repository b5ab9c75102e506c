#include "model/train_layer.h"
