from montero_ops import main

main()
