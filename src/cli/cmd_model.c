/* cmd_model.c - TEMPORARY placeholder until the real command lands. */
#include "cli.h"
int cmd_model(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "clipdex: model: not built yet\n");
    return 1;
}
