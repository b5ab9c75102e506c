#include "train/chat.h"
