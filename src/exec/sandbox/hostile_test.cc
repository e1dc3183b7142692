// hostile suite: written next
#include <gtest/gtest.h>
