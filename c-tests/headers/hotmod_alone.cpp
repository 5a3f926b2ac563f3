// C++ variant of hotmod_alone.c (compiled with g++).
#include "hotmod_alone.c"
